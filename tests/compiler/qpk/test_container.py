"""The .qpk container and its validation: every defect is refused with a clear message."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from compiler import qpk
from compiler.errors import QpkError
from compiler.qpk import container
from graphs import small_cnn


@pytest.fixture(scope="module")
def graph():
    return small_cnn(np.random.default_rng(0), "ternary")


@pytest.fixture(scope="module")
def blob(graph):
    return qpk.to_bytes(graph)


def raw_pack(manifest, data, *, major=container.VERSION[0], minor=container.VERSION[1], flags=0):
    """A container with exactly this manifest (tensor entries included) and data."""
    mbytes = json.dumps(manifest).encode()
    header = container.HEADER.pack(container.MAGIC, major, minor, flags, len(mbytes),
                                   hashlib.sha256(mbytes).digest(), len(data))
    head = header + mbytes
    return head + b"\0" * (-len(head) % 64) + data


def split(blob):
    """``(manifest, data)`` of a valid container."""
    _, _, _, _, mlen, _, dlen = container.HEADER.unpack_from(blob)
    manifest = json.loads(blob[container.HEADER.size:container.HEADER.size + mlen])
    start = -(-(container.HEADER.size + mlen) // 64) * 64
    return manifest, blob[start:start + dlen]


def load_error(blob, tmp_path, name="model.qpk"):
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(QpkError) as info:
        qpk.load(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_round_trip(graph, blob):
    back = qpk.from_bytes(blob)
    assert [n.name for n in back.nodes] == [n.name for n in graph.nodes]
    assert back.outputs == graph.outputs
    for a, b in zip(graph.nodes, back.nodes):
        assert a.op == b.op and a.inputs == b.inputs
        assert {k: v for k, v in a.attrs.items() if v is not None} == \
            {k: v for k, v in b.attrs.items() if v is not None}
        assert a.tensors.keys() == b.tensors.keys()
        for k in a.tensors:
            assert a.tensors[k].dtype == b.tensors[k].dtype
            np.testing.assert_array_equal(a.tensors[k], b.tensors[k])
        assert a.shape == b.shape


def test_writer_is_deterministic(graph, blob):
    assert qpk.to_bytes(graph) == blob


def test_no_pickle_in_container(blob):
    # Tensors are raw numbers and the manifest is JSON: no pickle opcodes, no object dtypes.
    manifest, _ = split(blob)
    assert {e["dtype"] for e in manifest["tensors"].values()} <= set(container.DTYPES)


@pytest.mark.parametrize("cut", [0, 5, 40, 70, 300, -1])
def test_truncated(blob, tmp_path, cut):
    cut = len(blob) + cut if cut < 0 else cut
    msg = load_error(blob[:cut], tmp_path)
    assert "truncated" in msg or "bad magic" in msg


def test_trailing_bytes(blob, tmp_path):
    assert "unexpected bytes" in load_error(blob + b"junk", tmp_path)


def test_bad_magic(blob, tmp_path):
    assert "not a .qpk file" in load_error(b"PK\x03\x04" + blob[4:], tmp_path)


def test_not_a_file(tmp_path):
    with pytest.raises(QpkError, match="no such file"):
        qpk.load(tmp_path / "missing.qpk")


@pytest.mark.parametrize("major,minor", [(2, 0), (0, 9), (1, 2)])
def test_wrong_version(blob, tmp_path, major, minor):
    manifest, data = split(blob)
    msg = load_error(raw_pack(manifest, data, major=major, minor=minor), tmp_path)
    assert f"version {major}.{minor} is not supported" in msg and "header.version" in msg


def test_older_minor_version_is_read(blob, tmp_path):
    manifest, data = split(blob)
    manifest["version"] = [1, 0]
    path = tmp_path / "old.qpk"
    path.write_bytes(raw_pack(manifest, data, minor=0))
    assert len(qpk.load(path).nodes) == len(qpk.from_bytes(blob).nodes)


def test_manifest_version_disagrees(blob, tmp_path):
    manifest, data = split(blob)
    manifest["version"] = [1, 7]
    assert "disagrees with the header" in load_error(raw_pack(manifest, data), tmp_path)


def test_corrupted_tensor(blob, tmp_path):
    manifest, _ = split(blob)
    entry = manifest["tensors"]["conv2.weight"]
    start = len(blob) - len(split(blob)[1]) + entry["offset"]
    bad = bytearray(blob)
    bad[start] ^= 0xFF
    msg = load_error(bytes(bad), tmp_path)
    assert "tensor 'conv2.weight'" in msg and "checksum mismatch" in msg


def test_corrupted_manifest(blob, tmp_path):
    bad = bytearray(blob)
    bad[container.HEADER.size + 10] ^= 0x01
    assert "manifest checksum mismatch" in load_error(bytes(bad), tmp_path)


def test_manifest_not_json(blob, tmp_path):
    _, data = split(blob)
    mbytes = b"{not json"
    header = container.HEADER.pack(container.MAGIC, 1, 0, 0, len(mbytes),
                                   hashlib.sha256(mbytes).digest(), len(data))
    head = header + mbytes
    assert "not valid JSON" in load_error(head + b"\0" * (-len(head) % 64) + data, tmp_path)


def mutate(blob, fn):
    manifest, data = split(blob)
    fn(manifest)
    return raw_pack(manifest, data)


def node(manifest, name):
    return next(n for n in manifest["nodes"] if n["name"] == name)


@pytest.mark.parametrize("change,expect", [
    (lambda m: m["tensors"]["conv2.weight"].update(shape=[8, 4, 3, 4]),
     "tensor 'conv2.weight': field 'nbytes'"),
    (lambda m: m["tensors"]["conv2.weight"].update(dtype="complex64"),
     "tensor 'conv2.weight': field 'dtype'"),
    (lambda m: m["tensors"]["conv2.weight"].update(offset=10 ** 9),
     "tensor 'conv2.weight': bytes"),
    (lambda m: node(m, "conv2").update(op="softmax"), "node 'conv2': unsupported op 'softmax'"),
    (lambda m: node(m, "conv2").update(inputs=["nope"]),
     "node 'conv2': input 'nope' does not exist"),
    (lambda m: node(m, "conv2")["attrs"].update(kernel="3"),
     "node 'conv2': attribute 'kernel' must be int"),
    (lambda m: node(m, "conv2")["attrs"].pop("kernel"), "node 'conv2': missing attribute 'kernel'"),
    (lambda m: node(m, "conv2")["attrs"].update(dilation=2),
     "node 'conv2': unknown attribute 'dilation'"),
    (lambda m: node(m, "conv2")["attrs"].update(weight_kind="fp32"),
     "node 'conv2': attribute 'weight_kind'"),
    (lambda m: node(m, "conv2")["tensors"].update(weight="missing.t"),
     "node 'conv2': tensor 'weight' refers to 'missing.t'"),
    (lambda m: node(m, "fc")["tensors"].pop("bias"), "fc.bias belong to no node"),
    (lambda m: m.update(outputs=["nowhere"]), "output 'nowhere' is not a node"),
    (lambda m: m.update(format="onnx"), "field 'format'"),
    (lambda m: m.pop("nodes"), "missing field 'nodes'"),
    (lambda m: node(m, "conv2").update(extra=1), "node 'conv2': unknown field(s) extra"),
])
def test_inconsistent_manifest(blob, tmp_path, change, expect):
    assert expect in load_error(mutate(blob, change), tmp_path)


def test_wrong_shape_names_node_and_field(graph, tmp_path):
    g = graph.copy()
    g["conv2"].tensors["weight"] = g["conv2"].tensors["weight"][:, :2]
    manifest, data = split(qpk.to_bytes(graph))
    # Re-pack with the bad tensor so that checksums are right and only the shape is wrong.
    tensors = {f"{n.name}.{k}": v for n in g.nodes for k, v in n.tensors.items()}
    blob = container.pack({k: v for k, v in manifest.items() if k != "tensors"}, tensors)
    msg = load_error(blob, tmp_path)
    assert "node 'conv2'" in msg and "tensor 'weight' has shape [8, 2, 3, 3]" in msg


def test_non_ternary_weight_names_value(graph, tmp_path):
    manifest, _ = split(qpk.to_bytes(graph))
    tensors = {f"{n.name}.{k}": np.array(v) for n in graph.nodes for k, v in n.tensors.items()}
    tensors["conv1.weight"][2, 0, 1, 1] = 3
    blob = container.pack({k: v for k, v in manifest.items() if k != "tensors"}, tensors)
    msg = load_error(blob, tmp_path)
    assert "node 'conv1'" in msg and "weight[2, 0, 1, 1] = 3 is not a 2-bit ternary value" in msg


def test_cli_reports_defect_without_traceback(blob, tmp_path):
    path = tmp_path / "broken.qpk"
    path.write_bytes(blob[:-7])
    proc = subprocess.run([sys.executable, "-m", "compiler", "inspect", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "truncated" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_cli_inspect_table(blob, tmp_path):
    path = tmp_path / "ok.qpk"
    path.write_bytes(blob)
    proc = subprocess.run([sys.executable, "-m", "compiler", "inspect", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for col in ("node", "op", "in shape", "out shape", "weights / values", "bits", "params",
                "MACs"):
        assert col in out
    assert "| conv2 " in out and "| ternary" in out and "| total" in out
    # conv2: 8 outputs x 4 inputs x 3 x 3 weights on a 4x4 output map
    assert "4x8x8" in out and f"{8 * 4 * 9 * 16:,}" in out


def test_load_then_save_gives_the_same_bytes(blob):
    assert qpk.to_bytes(qpk.from_bytes(blob)) == blob
