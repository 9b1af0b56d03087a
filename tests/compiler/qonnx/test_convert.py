"""QONNX import: each construct against qonnx's own executor, and every refusal."""

import numpy as np
import onnx
import pytest

from compiler import qpk
from compiler.driver.cli import main
from compiler.errors import OnnxImportError
from compiler.ir import interpret
from compiler.qonnx import import_onnx

from qonnx_graphs import DOMAIN, GraphBuilder, qonnx_run


def _save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _agree(model, tmp_path, n=24, seed=1):
    """The imported golden model equals qonnx's execution of the graph on every input.

    qonnx computes in float32, the importer exactly (:mod:`compiler.qonnx.quantizers`):
    the graphs here use power-of-two scales wherever a value can fall on a rounding tie,
    so that float32 is exact there too, and other scales only where ties do not occur.
    """
    graph = import_onnx(_save(model, tmp_path))
    s_in, s_out = graph.metadata["input_scale"], graph.metadata["output_scale"]
    lo, hi = -128, 127
    ints = np.random.default_rng(seed).integers(lo, hi + 1,
                                                size=(n, *graph.input.attrs["shape"]))
    gold = interpret.run(graph, ints)
    ref = qonnx_run(model, ints * s_in) / s_out
    assert np.abs(ref - np.round(ref)).max() < 1e-3
    np.testing.assert_array_equal(gold, np.round(ref).astype(np.int64))
    return graph, gold


def test_quant_conv_relu_maxpool_gap_gemm(tmp_path):
    b = GraphBuilder((2, 8, 8))
    x = b.quant("x", 0.0625, 8)
    x = b.node("Conv", [x, b.weights((6, 2, 3, 3), 2)], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    x = b.node("BatchNormalization", [x, b.const(b.rng.uniform(0.5, 2, 6)),
                                      b.const(b.rng.normal(size=6)), b.const(b.rng.normal(size=6)),
                                      b.const(b.rng.uniform(0.5, 2, 6))])
    x = b.quant(b.node("Relu", [x]), 0.25, 4, signed=0)
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    # Per output channel weight scales: absorbed by the next quantizer's thresholds.
    x = b.node("Conv", [x, b.weights((5, 6, 3, 3), 4, scale=b.rng.uniform(0.1, 0.3,
                                                                           (5, 1, 1, 1)))],
               kernel_shape=[3, 3])
    x = b.quant(x, 0.5, 5, narrow=1)
    x = b.node("GlobalAveragePool", [x])
    x = b.node("Flatten", [x])
    x = b.node("Gemm", [x, b.weights((3, 5), 3), b.const(b.rng.normal(size=3))], transB=1)
    out = b.quant(x, 0.125, 8)
    graph, gold = _agree(b.model(out), tmp_path)
    ops = [n.op for n in graph.nodes]
    assert ops == ["input", "conv2d", "threshold", "maxpool", "conv2d", "threshold", "gap",
                   "dense", "threshold"]
    assert len(np.unique(gold)) > 3                 # not a constant network


def test_multithreshold_bipolar_trunc_matmul_add(tmp_path):
    b = GraphBuilder((16,))
    x = b.quant("x", 0.1, 8)
    w = b.node("BipolarQuant", [b.const(b.rng.normal(size=(16, 8))), b.const(0.25)], DOMAIN)
    x = b.node("MatMul", [x, w])
    x = b.node("Add", [x, b.const(b.rng.normal(size=8))])
    th = np.sort(b.rng.normal(scale=2.0, size=(8, 6)), axis=1)
    x = b.node("MultiThreshold", [x, b.const(th)], DOMAIN, out_scale=0.5, out_bias=-1.0)
    x = b.node("BipolarQuant", [x, b.const(1.5)], DOMAIN)
    x = b.node("Gemm", [x, b.weights((8, 6), 4)])
    x = b.node("Trunc", [x, b.const(0.25), b.const(0.0), b.const(10), b.const(6)], DOMAIN,
               rounding_mode="FLOOR")
    graph, gold = _agree(b.model(x), tmp_path)
    kinds = [n.attrs.get("weight_kind") for n in graph.nodes if n.op == "dense"]
    assert kinds == ["ternary", "int"]
    assert len(np.unique(gold)) > 3


def test_residual_add_of_one_scale(tmp_path):
    b = GraphBuilder((3, 6, 6))
    x = b.quant("x", 0.0625, 8)
    a = b.quant(b.node("Relu", [b.node("Conv", [x, b.weights((4, 3, 1, 1), 3)],
                                       kernel_shape=[1, 1])]), 0.25, 4, signed=0)
    c = b.node("Conv", [a, b.weights((4, 4, 3, 3), 2)], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    c = b.quant(c, 0.25, 6)
    s = b.quant(b.node("Relu", [b.node("Add", [a, c])]), 0.25, 4, signed=0)
    out = b.node("Gemm", [b.node("Flatten", [s]), b.weights((5, 144), 2)], transB=1)
    graph, _ = _agree(b.model(out), tmp_path)
    assert "add" in [n.op for n in graph.nodes]


def _refused(model, tmp_path, *words):
    with pytest.raises(OnnxImportError) as err:
        import_onnx(_save(model, tmp_path))
    for word in words:
        assert word in str(err.value)
    return str(err.value)


def _head(b):
    return b.quant("x", 0.0625, 8)


def test_add_of_two_scales_is_refused(tmp_path):
    b = GraphBuilder((4,))
    x = _head(b)
    y = b.node("Add", [b.quant(x, 0.25, 4), b.quant(x, 0.5, 4)])
    out = b.node("Gemm", [y, b.weights((2, 4), 2)], transB=1)
    _refused(b.model(out), tmp_path, "add", "different scales")


def test_float_bias_on_the_output_is_refused(tmp_path):
    b = GraphBuilder((4,))
    out = b.node("Gemm", [_head(b), b.weights((2, 4), 2), b.const([0.013, 0.5])], transB=1)
    _refused(b.model(out), tmp_path, "output", "float bias")


def test_a_whole_bias_on_the_output_is_kept(tmp_path):
    b = GraphBuilder((4,))
    x = _head(b)
    # One step of the output is 0.0625 * 0.5: these biases are 3 and -2 steps.
    out = b.node("Gemm", [x, b.weights((2, 4), 2), b.const([0.09375, -0.0625])], transB=1)
    graph, _ = _agree(b.model(out), tmp_path)
    assert graph.output.tensors["bias"].tolist() == [3, -2]


def test_per_channel_input_scale_into_a_mac_is_refused(tmp_path):
    b = GraphBuilder((2, 4, 4))
    x = b.quant(_head(b), np.array([0.1, 0.2]).reshape(1, 2, 1, 1), 4)
    out = b.node("Conv", [x, b.weights((2, 2, 1, 1), 2)], kernel_shape=[1, 1])
    _refused(b.model(out), tmp_path, "conv", "scale per channel")


@pytest.mark.parametrize("case,words", [
    ("sigmoid", ["Sigmoid", "not supported"]),
    ("grouped", ["group=2"]),
    ("float_weights", ["not quantized"]),
    ("unquantized_input", ["must be quantized activations"]),
    ("negative_bn", ["non-positive scale"]),
])
def test_unsupported_constructs_are_refused_by_name(tmp_path, case, words):
    b = GraphBuilder((2, 4, 4))
    x = _head(b) if case != "unquantized_input" else "x"
    if case == "sigmoid":
        x = b.node("Sigmoid", [x])
    elif case == "grouped":
        x = b.node("Conv", [x, b.weights((2, 1, 1, 1), 2)], kernel_shape=[1, 1], group=2)
    elif case == "float_weights":
        x = b.node("Conv", [x, b.const(np.ones((2, 2, 1, 1)))], kernel_shape=[1, 1])
    elif case == "unquantized_input":
        x = b.node("Conv", [x, b.weights((2, 2, 1, 1), 2)], kernel_shape=[1, 1])
    elif case == "negative_bn":
        x = b.node("BatchNormalization", [x, b.const([1.0, -1.0]), b.const([0, 0]),
                                          b.const([0, 0]), b.const([1, 1])])
        x = b.quant(x, 0.25, 4)
    message = _refused(b.model(x), tmp_path, *words)
    assert "node '" in message and str(tmp_path / "m.onnx") in message


def test_external_data_is_refused_not_followed(tmp_path):
    b = GraphBuilder((4,))
    out = b.node("Gemm", [_head(b), b.weights((2, 4), 2)], transB=1)
    model = b.model(out)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 32)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", str(secret)
    _refused(model, tmp_path, "external data")


def test_files_that_are_not_onnx_are_refused(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(OnnxImportError, match="not an ONNX model"):
        import_onnx(tmp_path / "junk.onnx")
    with pytest.raises(OnnxImportError, match="no such file"):
        import_onnx(tmp_path / "missing.onnx")
    with pytest.raises(OnnxImportError, match="is a directory"):
        import_onnx(tmp_path)


def test_import_command_writes_a_package_and_errors_are_one_line(tmp_path, capsys):
    b = GraphBuilder((4,))
    out = b.node("Gemm", [_head(b), b.weights((2, 4), 2)], transB=1)
    src = _save(b.model(out), tmp_path, "tiny net.onnx")
    assert main(["import", str(src), "-o", str(tmp_path / "t.qpk")]) == 0
    assert "wrote" in capsys.readouterr().out
    graph = qpk.load(tmp_path / "t.qpk")
    assert graph.name == "tiny_net" and graph.metadata["input_scale"] == 0.0625

    b = GraphBuilder((4,))
    _save(b.model(b.node("Tanh", [_head(b)])), tmp_path, "bad.onnx")
    assert main(["import", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "b.qpk")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Tanh" in err and "Traceback" not in err
    assert not (tmp_path / "b.qpk").exists()


def test_flatten_of_a_one_pixel_map(tmp_path):
    """A 3x3 conv over a 3x3 input leaves (C, 1, 1): Flatten must still make a vector."""
    b = GraphBuilder((2, 3, 3))
    x = b.node("Conv", [_head(b), b.weights((4, 2, 3, 3), 2)], kernel_shape=[3, 3])
    x = b.quant(b.node("Relu", [x]), 0.25, 4, signed=0)
    out = b.node("Gemm", [b.node("Flatten", [x]), b.weights((3, 4), 2)], transB=1)
    graph, _ = _agree(b.model(out), tmp_path)
    assert "flatten" in [n.op for n in graph.nodes]
