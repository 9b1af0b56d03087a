"""The exported graph: valid IR, round trip through .qpk, passes, and the numeric contract."""

import numpy as np
import pytest
import torch
from float_models import MODELS, make
from torch import nn

from compiler import passes, qpk
from compiler.ir import interpret
from compiler.errors import QuantizeError
from compiler.frontend import quantize
from compiler.frontend.agreement import input_to_int

METHODS = [("ternary", {}), ("pow2", {}), ("int", {"weight_bits": 3})]


@pytest.fixture(scope="module")
def results():
    """Every test model quantized with every method (random weights, calibration only)."""
    out = {}
    for name in MODELS:
        model, x = make(name)
        for method, kw in METHODS:
            out[name, method] = (quantize(model, x, weights=method, **kw), model, x)
    return out


@pytest.mark.parametrize("method", [m for m, _ in METHODS])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_graph_validates_round_trips_and_prepares(results, name, method):
    result, _, x = results[name, method]
    graph = result.graph
    blob = qpk.to_bytes(graph)
    back = qpk.from_bytes(blob)
    assert [n.name for n in back.nodes] == [n.name for n in graph.nodes]
    for a, b in zip(graph.nodes, back.nodes):
        assert a.op == b.op and a.inputs == b.inputs
        assert {k: v for k, v in a.attrs.items() if v is not None} == \
               {k: v for k, v in b.attrs.items() if v is not None}
        for key in a.tensors:
            assert np.array_equal(a.tensors[key], b.tensors[key])
            assert a.tensors[key].dtype == b.tensors[key].dtype
    assert back.metadata["output_scale"] == graph.metadata["output_scale"]
    prepared = passes.prepare(back)
    assert not any(n.op == "requant" for n in prepared.nodes)
    x_int = input_to_int(graph, x)
    assert np.array_equal(interpret.run(prepared, x_int), interpret.run(graph, x_int))


@pytest.mark.parametrize("method", [m for m, _ in METHODS])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_node_equals_the_fake_quant_model(results, name, method):
    """Golden model and fake-quant exact mode agree on every node, not just the output."""
    result, _, x = results[name, method]
    golden = interpret.run_all(result.graph, input_to_int(result.graph, x))
    fake = result.model.run_exact(x, all_values=True)
    assert set(golden) == set(fake)
    for key, value in golden.items():
        assert np.array_equal(value, fake[key].numpy()), key
    assert result.report.exact and result.report.ok


def test_digits_cnn_structure_and_scales(results):
    result, _, _ = results["digits_cnn", "ternary"]
    g, sc = result.graph, result.scales
    assert [(n.name, n.op) for n in g.nodes] == [
        ("input", "input"), ("conv1", "conv2d"), ("relu1", "requant"), ("conv2", "conv2d"),
        ("relu2", "requant"), ("block_conv1", "conv2d"), ("block_relu1", "requant"),
        ("block_conv2", "conv2d"), ("block_conv2_q", "requant"), ("add", "add"),
        ("block_relu2", "requant"), ("pool", "maxpool"), ("gap", "gap"), ("flatten", "flatten"),
        ("fc", "dense")]
    assert g["input"].attrs == {"shape": [1, 8, 8], "bits": 8, "signed": True,
                                "scale": g.metadata["input_scale"]}
    for name in ("relu1", "relu2", "block_relu1", "block_relu2"):
        assert (g[name].attrs["bits"], g[name].attrs["signed"]) == (4, False)
    # The residual branch: signed, act_bits + 2 bits, at the skip input's scale.
    res = g["block_conv2_q"]
    assert (res.attrs["bits"], res.attrs["signed"]) == (6, True)
    assert res.attrs["scale"] == g["relu2"].attrs["scale"]
    assert g["add"].inputs == ["block_conv2_q", "relu2"]
    # After the add: relu + quantization with multiplier s_x / s_out and offset 0.5.
    out = g["block_relu2"]
    assert np.all(out.tensors["multiplier"] == sc["relu2"] / out.attrs["scale"])
    assert np.all(out.tensors["offset"] == 0.5)
    # GAP is a sum: the classifier's accumulator scale is s_w * s_x / (H * W).
    fc = g["fc"]
    assert sc["gap"] == sc["pool"] / 4
    assert g.metadata["output_scale"] == fc.attrs["weight_scale"] * sc["pool"] / 4
    for node in g.nodes:
        if node.op in ("conv2d", "dense"):
            assert ("bias" in node.tensors) == (node.name == "fc")
            assert node.attrs["weight_kind"] == "ternary" and node.attrs["weight_bits"] == 2


def test_requant_folds_batch_norm(results):
    """m = s_w * s_x * |g| / s_out and o = h / s_out + 0.5, weights negated where g < 0."""
    result, model, _ = results["conv_bn_relu", "pow2"]
    g = result.graph
    conv, bn = model.conv, model.bn
    gamma = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    shift = ((conv.bias - bn.running_mean) * bn.weight / torch.sqrt(bn.running_var + bn.eps)
             + bn.bias).detach().double().numpy()
    assert (gamma < 0).any() and (gamma > 0).any()
    s_w, s_x = g["conv"].attrs["weight_scale"], g["input"].attrs["scale"]
    s_out = g["relu"].attrs["scale"]
    m, o = g["relu"].tensors["multiplier"], g["relu"].tensors["offset"]
    assert np.all(m >= 0)
    np.testing.assert_allclose(m, s_w * s_x * np.abs(gamma) / s_out, rtol=1e-6)
    np.testing.assert_allclose(o, shift / s_out + 0.5, rtol=1e-5, atol=1e-6)
    w_int, _ = result.model.step("conv").method.quantize(conv.weight.detach())
    sign = np.where(gamma < 0, -1, 1)[:, None, None, None]
    assert np.array_equal(g["conv"].tensors["weight"], w_int.numpy() * sign)


def test_final_bias_in_accumulator_units(results):
    result, model, _ = results["conv_bn_relu", "int"]
    g = result.graph
    s_acc = g["fc"].attrs["weight_scale"] * result.scales["flatten"]
    assert g.metadata["output_scale"] == s_acc
    expect = np.round(model.fc.bias.detach().double().numpy() / s_acc)
    assert np.array_equal(g["fc"].tensors["bias"], expect)


def test_downsample_branches_share_a_scale(results):
    result, _, _ = results["downsample", "ternary"]
    g = result.graph
    a, b = (g[name] for name in g["add"].inputs)
    assert {a.name, b.name} == {"block_conv2_q", "block_downsample_0_q"}
    assert a.attrs["scale"] == b.attrs["scale"]
    assert (a.attrs["bits"], a.attrs["signed"]) == (b.attrs["bits"], b.attrs["signed"]) == (6, True)


def test_pool_without_relu_gets_a_signed_requant(results):
    g = results["pool_no_relu", "pow2"][0].graph
    assert g["pool"].inputs == ["a_q"]
    assert (g["a_q"].attrs["bits"], g["a_q"].attrs["signed"]) == (5, True)
    assert g["relu"].op == "relu"


def test_metadata_and_determinism():
    model, x = make("digits_cnn")
    a = quantize(model, x, weights="pow2", metadata={"note": "x"})
    b = quantize(model, x, weights="pow2", metadata={"note": "x"})
    assert a.to_bytes() == b.to_bytes()
    meta = a.graph.metadata
    assert meta["note"] == "x"
    assert meta["quantization"] == {"method": "pow2", "weight_kind": "pow2", "weight_bits": 4,
                                    "levels": 7, "act_bits": 4, "input_bits": 8,
                                    "calibration": "mse"}


def test_act_and_input_bits():
    model, x = make("digits_cnn")
    g = quantize(model, x, act_bits=3, input_bits=6, calibration="max").graph
    assert g["input"].attrs["bits"] == 6
    assert g["relu1"].attrs["bits"] == 3 and g["block_conv2_q"].attrs["bits"] == 5
    assert np.abs(input_to_int(g, x)).max() == 31          # max calibration never clips


def test_accumulator_used_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            y = self.fc(x)
            return self.out(torch.relu(y) + y)

    with pytest.raises(QuantizeError, match=r"node 'fc' \(nn.Linear\): its output .* is used by 2"):
        quantize(Twice(), torch.randn(8, 4))


def test_x_plus_x_requantizes_once():
    class Double(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            y = self.fc(x)
            return self.out(torch.relu(y + y))

    torch.manual_seed(0)
    model, x = Double(), torch.randn(32, 4)
    g = quantize(model, x).graph
    assert g["add"].inputs == ["fc_q", "fc_q"]
    assert [n.op for n in g.nodes].count("requant") == 2


@pytest.mark.parametrize("kw, words", [({"act_bits": 0}, "act_bits"),
                                       ({"input_bits": 40}, "input_bits"),
                                       ({"calibration": "kl"}, "unknown calibration"),
                                       ({"weights": "binary-connect"},
                                        "unknown weight quantization")])
def test_bad_options(kw, words):
    model, x = make("mlp")
    with pytest.raises(QuantizeError, match=words):
        quantize(model, x, **kw)


def test_bad_calibration_inputs():
    model, _ = make("mlp")
    with pytest.raises(QuantizeError, match="non-empty batch"):
        quantize(model, torch.zeros(0, 1, 8, 8))
    with pytest.raises(QuantizeError, match="fails on inputs of shape"):
        quantize(model, torch.zeros(4, 3, 8, 8))
