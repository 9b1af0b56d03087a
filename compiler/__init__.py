"""A compiler from quantized neural networks to multiplier-free FPGA accelerators.

``python -m compiler --help`` lists the commands. The path a model takes:
``.qpk`` (:mod:`compiler.qpk`) -> graph IR (:mod:`compiler.ir`) -> passes
(:mod:`compiler.passes`) -> hardware plan (:mod:`compiler.backends.dataflow.plan`) -> Amaranth
(:mod:`compiler.backends.dataflow.lower`) -> Verilog, weight images, report and board files
(:mod:`compiler.driver.build`).
"""

__version__ = "0.1.0"
