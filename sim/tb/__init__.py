"""cocotb testbenches, run inside the simulator by :mod:`sim.verilator`."""
