"""ResNet-18 in the zoo: quantized offline, inspected, exact, loadable, refused by dataflow.

One ImageNet ResNet-18 package is made per session, by the command a user runs
(``python -m compiler quantize resnet18 -o r.qpk``, in this process): a seeded
initialisation calibrated on 32 seeded synthetic images, about 20 s. The
fake-quantized torch model the command computed is kept beside it (a spy on the
pipeline the command calls) so that the golden model can be held against it on
images the calibration never saw.
"""

import re

import numpy as np
import pytest
import torch

import compiler.driver.build  # noqa: F401  (see test_dataflow_build_is_refused_on_weight_storage)
from compiler import qpk
from compiler.driver.cli import main
from compiler.errors import QuantizeError
from compiler.frontend import pipeline
from compiler.frontend.agreement import check_agreement
from compiler.zoo.checkpoint import load_checkpoint
from compiler.zoo.models import resnet18, resnet18_cifar


@pytest.fixture(scope="session")
def resnet18_package(tmp_path_factory):
    """``(path of the .qpk, the QuantResult behind it, the command's stdout)``."""
    import contextlib
    import io
    path = tmp_path_factory.mktemp("resnet18") / "r.qpk"
    outcomes = []
    real = pipeline.quantize_and_evaluate

    def spy(*args, **kw):
        outcomes.append(real(*args, **kw))
        return outcomes[-1]

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(pipeline, "quantize_and_evaluate", spy)
        rc = main(["quantize", "resnet18", "-o", str(path)])
    assert rc == 0, out.getvalue()
    assert len(outcomes) == 1
    return path, outcomes[0].result, out.getvalue()


def test_quantize_resnet18_offline(resnet18_package):
    path, result, stdout = resnet18_package
    # 32 synthetic calibration images, golden == fake-quant on every output step.
    assert "exact: 32/32 argmax equal, max deviation 0 output steps" in stdout
    assert f"wrote {path}" in stdout
    assert path.read_bytes() == result.to_bytes()
    graph = qpk.load(path)
    assert graph.input.attrs["shape"] == [3, 224, 224]
    assert graph[graph.outputs[0]].shape == (1000,)
    q = graph.metadata["quantization"]
    assert q["weight_kind"] == "ternary" and q["act_bits"] == 4
    stem = graph["conv1"]
    assert {k: stem.attrs[k] for k in ("kernel", "stride", "padding")} == \
        {"kernel": 7, "stride": 2, "padding": 3}
    pool = graph["maxpool"]
    assert (pool.attrs["kernel"], pool.attrs["stride"], pool.attrs["padding"]) == (3, 2, 1)
    assert pool.shape == (64, 56, 56)


def test_golden_and_fake_quant_agree_exactly_on_new_images(resnet18_package):
    """Every output of the fake-quantized torch model is the golden model's integer times the
    output scale, to float32's rounding of that product (far below half a step)."""
    from compiler.frontend.agreement import input_to_int
    from compiler.frontend.data import synthetic
    from compiler.ir import interpret
    path, result, _ = resnet18_package
    graph = qpk.load(path)
    x = synthetic((3, 224, 224), 4, seed=1).x          # not the calibration images (seed 0)
    x[1] *= 3.0                                        # beyond the calibrated range: clipped
    gold = interpret.run(graph, input_to_int(graph, x))
    with torch.no_grad():
        fake = result.model.eval()(x).double().numpy() / graph.metadata["output_scale"]
    assert np.array_equal(np.rint(fake), gold)
    assert np.max(np.abs(fake - gold)) < 1e-2
    assert np.array_equal(fake.argmax(axis=1), gold.argmax(axis=1))
    report = check_agreement(graph, result.model, x)
    assert report.inputs_equal and report.argmax_equal == 4 and report.max_steps < 1e-2, report


def test_inspect_prints_it(resnet18_package, capsys):
    path, _, _ = resnet18_package
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ")}
    assert rows["conv1"][:4] == ["conv2d", "input", "3x224x224", "64x112x112"]
    assert rows["maxpool"][:4] == ["maxpool", "relu", "64x112x112", "64x56x56"]
    assert rows["avgpool"][:4] == ["gap", "layer4_1_relu_1", "512x7x7", "512"]
    assert rows["fc"][3] == "1000"
    # torchvision's 11,689,512 parameters less the batch norms' 9,600 (folded).
    assert rows["total"][-2] == "11,679,912"
    assert re.search(r"weight storage: [\d,]+ bits .*2\.00 bits per weight", out)


@pytest.mark.parametrize("board, have", [("arty_a7", "arty_a7_35 has 1.8"),
                                         ("ulx3s", "ulx3s has 3.8")])
def test_dataflow_build_is_refused_on_weight_storage(resnet18_package, tmp_path, capsys, board,
                                                     have):
    """The dataflow back end with default options (32 verification inputs included): the
    refusal names the weights.

    build() takes ``stream=sys.stdout`` as a default argument, bound when its module is
    first imported; imported inside one capsys test, it would print into that test's closed
    capture in the next one. This module imports it at collection for that reason.
    """
    path, _, _ = resnet18_package
    rc = main(["build", str(path), "--engine", "dataflow", "--board", board,
               "-o", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert rc == 1
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    m = re.search(r"its weights alone need ([\d.]+) Mbit of on-chip ROM, and "
                  + re.escape(have) + r" Mbit of block RAM", err)
    assert m, err
    graph = qpk.load(path)
    weight_bits = sum(n.tensors["weight"].size * n.attrs["weight_bits"]
                      for n in graph.nodes if "weight" in n.tensors)
    assert float(m.group(1)) == pytest.approx(weight_bits / 1e6, abs=0.05)
    assert "the layer engine streams the weights from flash" in err
    assert not (tmp_path / "b" / "accel.v").exists()


def test_golden_memory_estimate_of_resnet18(resnet18_package):
    """The build's memory check counts one image's window matrix, not the batch's: the
    32 verification images of ResNet-18 need about 1.8 GB (measured peak), not 16."""
    from compiler.driver.compile_cost import graph_cost
    graph = qpk.load(resnet18_package[0])
    kept = sum(int(np.prod(n.shape)) for n in graph.nodes) * 8 * 32
    cost = graph_cost(graph, verify_inputs=32)
    assert kept < cost.bytes < 2 * kept


# --- checkpoints ------------------------------------------------------------------------


def _torchvision_state(seed):
    """A state_dict in torchvision's layout: the zoo model's own, at a seeded initialisation
    with random batch-norm statistics (torchvision itself is not installed here)."""
    torch.manual_seed(seed)
    model = resnet18()
    for name, t in model.state_dict().items():
        if name.endswith(("running_mean", "bias")):
            t.uniform_(-0.5, 0.5)
        elif name.endswith("running_var"):
            t.uniform_(0.5, 2.0)
    return model.state_dict()


def test_state_dict_has_torchvisions_names():
    state = resnet18().state_dict()
    assert len(state) == 122
    for name, shape in [("conv1.weight", (64, 3, 7, 7)), ("bn1.num_batches_tracked", ()),
                        ("layer1.0.conv1.weight", (64, 64, 3, 3)),
                        ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
                        ("layer2.0.downsample.1.running_var", (128,)),
                        ("layer4.1.bn2.weight", (512,)), ("fc.weight", (1000, 512)),
                        ("fc.bias", (1000,))]:
        assert tuple(state[name].shape) == shape, name


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_loads(tmp_path, suffix):
    state = _torchvision_state(5)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(0)
    model = load_checkpoint(resnet18(), path)
    got = model.state_dict()
    assert got.keys() == state.keys()
    for name in state:
        assert torch.equal(got[name], state[name]), name


def test_checkpoint_wrapped_in_a_dict_loads(tmp_path):
    state = _torchvision_state(6)
    torch.save({"state_dict": state, "epoch": 90}, tmp_path / "c.pth")
    got = load_checkpoint(resnet18(), tmp_path / "c.pth").state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)


def test_checkpoint_without_batch_norm_counters_loads(tmp_path):
    """torchvision's published resnet18-f37072fd.pth has no num_batches_tracked (102 entries)."""
    state = {k: v for k, v in _torchvision_state(7).items()
             if not k.endswith("num_batches_tracked")}
    assert len(state) == 102
    torch.save(state, tmp_path / "resnet18-f37072fd.pth")
    got = load_checkpoint(resnet18(), tmp_path / "resnet18-f37072fd.pth").state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    torch.save({"conv1.weight": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(QuantizeError, match="cannot read as a weights-only state dict"):
        load_checkpoint(resnet18(), tmp_path / "evil.pth")
    assert "unpickled code ran" not in capsys.readouterr().out


def test_checkpoint_of_another_layout_is_refused(tmp_path):
    torch.save(resnet18_cifar().state_dict(), tmp_path / "cifar.pth")
    with pytest.raises(QuantizeError, match=r"tensor 'conv1.weight' has shape \[64, 3, 3, 3\], "
                                            r"the model's is \[64, 3, 7, 7\]"):
        load_checkpoint(resnet18(), tmp_path / "cifar.pth")
    state = _torchvision_state(0)
    del state["fc.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(QuantizeError, match="missing fc.bias; unexpected nothing"):
        load_checkpoint(resnet18(), tmp_path / "partial.pth")


def test_quantize_with_a_checkpoint(tmp_path, capsys):
    """``--checkpoint`` replaces the seeded initialisation: the seed's own weights as a
    checkpoint give the same package byte for byte, other weights another package.
    (resnet18_cifar: the same code path as resnet18, a fraction of the time.)"""
    from safetensors.torch import save_file
    torch.manual_seed(0)
    save_file(resnet18_cifar().state_dict(), str(tmp_path / "seed0.safetensors"))
    torch.manual_seed(1)
    torch.save(resnet18_cifar().state_dict(), tmp_path / "seed1.pth")
    packages = {}
    for name, extra in [("init", []),
                        ("same", ["--checkpoint", str(tmp_path / "seed0.safetensors")]),
                        ("other", ["--checkpoint", str(tmp_path / "seed1.pth")])]:
        out = tmp_path / f"{name}.qpk"
        assert main(["quantize", "resnet18_cifar", "-o", str(out), "--calib", "4", *extra]) == 0
        packages[name] = out.read_bytes()
    assert "exact: 4/4 argmax equal" in capsys.readouterr().out
    assert packages["same"] == packages["init"]
    assert packages["other"] != packages["init"]
