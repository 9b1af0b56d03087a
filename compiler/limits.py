"""Every size and width the compiler accepts, declared once.

A ``.qpk`` may come from anyone, and the reader (:mod:`compiler.qpk`) refuses
anything beyond these limits before it allocates or computes anything large.
The graph validation (:mod:`compiler.ops`) checks the same limits on graphs
built in memory, so the writer never produces a file the reader refuses.
``docs/qpk.md`` has the table with the reason for each value
(``tests/compiler/test_limits.py`` keeps the two in agreement).

The values admit every model the project builds (the zoo, the tests, the
``bench.methods`` configurations) and a ResNet-18 at 224x224 (512 channels, a
7x7 stride-2 padding-3 stem, 1000 classes, 12-bit residual requantizers), and
refuse the absurd.
"""

# --- names --------------------------------------------------------------------------------
#: Node names in a file: an identifier that is also safe as a file name, a Verilog
#: identifier and a JSON key. No dot: the compiler derives names such as
#: ``act1.value`` and ``conv1.sums`` by appending ``.suffix``, so a user's name can
#: never equal a derived one.
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
#: Characters in a node name; derived names and file suffixes stay far below the
#: 255-byte file name limit of common file systems.
MAX_NAME_LENGTH = 100
#: Characters of free text the compiler prints (model name, producer name and version).
MAX_TEXT_LENGTH = 1000

# --- the container ------------------------------------------------------------------------
#: Bytes of a whole ``.qpk``; only this many are ever read. A ResNet-18 in int32 is 47 MB.
MAX_FILE_BYTES = 256 << 20
#: Bytes of the JSON manifest (a ResNet-18's is under 100 KB, per-channel scales included).
MAX_MANIFEST_BYTES = 16 << 20
#: Nesting of JSON arrays and objects in the manifest (the format itself needs 5).
MAX_JSON_DEPTH = 32
#: Nodes of a graph (a ResNet-152 has about 500 with its requantizers).
MAX_NODES = 1024
#: Entries of the manifest's tensor table: at most 4 tensors per node.
MAX_TENSORS = 4 * MAX_NODES

# --- tensors ------------------------------------------------------------------------------
#: Dimensions of a stored tensor: (O, C, k, k) weights have the most.
MAX_RANK = 4
#: Elements of one stored tensor, every dimension at least 1. ResNet-18's largest
#: (512x512x3x3) has 2.4 M; VGG-16's 102 M-weight classifier is refused.
MAX_TENSOR_ELEMENTS = 1 << 24

# --- feature maps and vectors -------------------------------------------------------------
#: Channels of a feature map, output channels of a layer (ResNet-50 has 2048).
MAX_CHANNELS = 4096
#: Height and width of a feature map, before padding.
MAX_SIDE = 4096
#: Elements C*H*W of one feature map (ResNet-18 at 224x224 peaks at 0.8 M).
MAX_FEATURE_ELEMENTS = 1 << 22
#: Length of a vector (a dense layer's input or output, a flattened map).
MAX_VECTOR_LENGTH = 1 << 16

# --- windows (conv2d, maxpool) ------------------------------------------------------------
#: Kernel side (the ResNet stem has 7, AlexNet 11).
MAX_KERNEL = 16
#: Stride (a 1x1 stride-2 shortcut has a stride larger than its kernel).
MAX_STRIDE = 16
#: Zero padding on each side; it must also be smaller than the kernel, or whole
#: output rows would see no input pixel.
MAX_PADDING = 15

# --- bit widths ---------------------------------------------------------------------------
#: Bits of the network input (the quantizer writes 2 to 16).
INPUT_BITS = (1, 16)
#: Bits of a linear ``requant``/``threshold`` output: ``2**bits - 1`` thresholds per
#: channel, so a residual branch of 12 bits still lowers to 4,095 of them.
ACT_BITS = (1, 12)
#: Bits of a power-of-two activation code: code 15 stands for 2**14.
POW2_CODE_BITS = (1, 4)
#: Thresholds of one ``requant``/``threshold`` node (channels x levels): 512
#: channels of 12 bits fit, and lowering stays within tens of MB.
MAX_THRESHOLDS = 1 << 21
#: ``weight_bits`` per weight kind. pow2 codes exponents up to 2**(bits-1) - 2:
#: 6 bits reach 2**30. int and ternary2 to 16 bits, as the quantizers write them.
#: For codebook weights it is the index width (256 kernels at most).
WEIGHT_BITS = {
    "ternary": (2, 2),
    "pow2": (2, 6),
    "int": (1, 16),
    "ternary2": (2, 16),
    "codebook": (1, 8),
}
#: Bits of a codebook entry (KQ writes 6).
ENTRY_BITS = (1, 16)

# --- arithmetic ---------------------------------------------------------------------------
#: Every value a node can produce, and every partial sum of a MAC (sum |w|*|x| +
#: |bias|), lies in a signed integer of this many bits. The golden model is int64,
#: and ``requant`` is evaluated in float64, exact for integers below 2**53; 48
#: leaves room for both. Real models need far less (ResNet-18 with 8-bit
#: activations and 16-bit weights: 37 bits).
ACC_BITS = 48
ACC_MIN = -(1 << (ACC_BITS - 1))
ACC_MAX = (1 << (ACC_BITS - 1)) - 1

# --- hardware -----------------------------------------------------------------------------
#: Bits of one signal of the generated hardware: Amaranth's netlist numbers the
#: bits of a cell with 16 bits (65,536), and the top-level input ports share one
#: cell, so the input beat and its few control bits must fit together; 256 bits
#: are kept for them. Checked by the planner (a stream beat, a window, a ROM
#: word), which refuses a layer that needs a wider one.
MAX_SIGNAL_BITS = (1 << 16) - 256
