"""Packages from strangers: forged manifests with valid checksums are refused, fast.

Each test is a defect a tester measured on the reader before it was hardened
(memory and time blow-ups, tracebacks, int64 holes); every one must now end in
the reader's own QpkError naming the file, node and field, before any large
allocation.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))     # the repository root

from bench.qpk_forge import repack, retensor, split  # noqa: E402
from compiler import limits, qpk  # noqa: E402
from compiler.errors import QpkError  # noqa: E402
from compiler.qpk import container  # noqa: E402
from sim import golden  # noqa: E402


def pack(nodes, outputs, tensors, metadata=None):
    """A package of raw node dicts and arrays, written without validating anything."""
    manifest = {"format": "qpk", "version": list(container.VERSION),
                "producer": {"name": "test"}, "model": {"name": "m"}, "outputs": outputs,
                "nodes": nodes, "metadata": metadata or {}}
    return container.pack(manifest, tensors)


def net(*, in_shape=(1, 4, 4), in_bits=8, conv=None, weight=None, bias=None, rq=None,
        mult=None):
    """input -> conv2d -> requant, with overrides of the conv and requant attributes."""
    c = in_shape[0]
    w = np.ones((2, c, 3, 3), np.int8) if weight is None else weight
    o = w.shape[0]
    conv_attrs = {"kernel": 3, "stride": 1, "padding": 1, "weight_kind": "int",
                  "weight_bits": 4, **(conv or {})}
    rq_attrs = {"bits": 4, "signed": False, **(rq or {})}
    tensors = {"c.weight": w, "q.multiplier": np.full(o, 0.1) if mult is None else mult,
               "q.offset": np.zeros(o)}
    crefs = {"weight": "c.weight"}
    if bias is not None:
        tensors["c.bias"], crefs["bias"] = bias, "c.bias"
    nodes = [
        {"name": "x", "op": "input", "inputs": [],
         "attrs": {"shape": list(in_shape), "bits": in_bits, "signed": True}},
        {"name": "c", "op": "conv2d", "inputs": ["x"], "attrs": conv_attrs, "tensors": crefs},
        {"name": "q", "op": "requant", "inputs": ["c"], "attrs": rq_attrs,
         "tensors": {"multiplier": "q.multiplier", "offset": "q.offset"}},
    ]
    return pack(nodes, ["q"], tensors)


def refused(blob, *words, seconds=2.0):
    t = time.monotonic()
    with pytest.raises(QpkError) as info:
        qpk.from_bytes(blob, "evil.qpk")
    assert time.monotonic() - t < seconds
    msg = str(info.value)
    assert msg.startswith("evil.qpk: ") and "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_the_test_network_is_valid():
    assert [n.name for n in qpk.from_bytes(net()).nodes] == ["x", "c", "q"]


# --- memory and time blow-ups ---------------------------------------------------------------

@pytest.mark.parametrize("bits", [13, 16, 24, 32])
def test_wide_requant_refused(bits):
    refused(net(rq={"bits": bits}), "node 'q'", "attribute 'bits'")


def test_widest_requant_accepted():
    assert qpk.from_bytes(net(rq={"bits": limits.ACT_BITS[1]}))["q"].attrs["bits"] == 12


def test_huge_input_and_padding_refused():
    refused(net(in_shape=(1, 2 ** 20, 2 ** 20)), "node 'x'", "attribute 'shape'")
    refused(net(in_shape=(2, 2 ** 11, 2 ** 11)), "node 'x'", "elements")
    refused(net(conv={"padding": 2 ** 20 - 1}), "node 'c'", "attribute 'padding'")
    refused(net(conv={"padding": 3}), "node 'c'", "padding 3 must be smaller than the kernel")


@pytest.mark.parametrize("bits", [7, 31, 32])
def test_wide_pow2_weights_refused_at_once(bits):
    refused(net(conv={"weight_kind": "pow2", "weight_bits": bits}), "node 'c'",
            "'weight_bits'", seconds=0.5)


# --- crashes ---------------------------------------------------------------------------------

def _edit(blob, fn):
    m, data = split(blob)
    fn(m)
    return repack(m, data)


@pytest.mark.parametrize("shape,words", [
    ([2 ** 32, 2 ** 32, 0, 1], "dimension"),          # int64 product wraps to 0
    ([2 ** 32, 2 ** 32], "dimension"),
    ([2 ** 12, 2 ** 12, 2 ** 12], "elements"),
    ([1] * 65, "dimensions"),
    ([2 ** 63, 1], "dimension"),
    ([2 ** 64], "dimension"),
    ([[1]], "list of integers"),
])
def test_bad_tensor_shapes_refused(shape, words):
    blob = _edit(net(), lambda m: m["tensors"]["c.weight"].update(shape=shape))
    refused(blob, "tensor 'c.weight'", "field 'shape'", words)


def test_list_where_a_reference_or_dtype_belongs():
    refused(_edit(net(), lambda m: m["nodes"][1]["tensors"].update(weight=["c.weight"])),
            "node 'c'", "tensor 'weight' must name a tensor entry")
    refused(_edit(net(), lambda m: m["tensors"]["c.weight"].update(dtype=["int8"])),
            "tensor 'c.weight'", "field 'dtype'")


def test_entries_beyond_int64_refused():
    refused(_edit(net(), lambda m: m["tensors"]["c.weight"].update(offset=2 ** 64)),
            "tensor 'c.weight'", "outside")
    refused(_edit(net(), lambda m: m["nodes"][1]["attrs"].update(kernel=2 ** 63)),
            "node 'c'", "attribute 'kernel'")


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deep_json_refused(depth):
    m, data = split(net())
    deep = b"[" * depth + b"1" + b"]" * depth
    text = json.dumps(m).encode().replace(b'"metadata": {}', b'"metadata": {"x": ' + deep + b"}")
    refused(repack(None, data, text=text), "manifest", "nests")


@pytest.mark.parametrize("text,words", [
    (b'{"a": NaN}', "not valid JSON"),
    (b'{"a": 1e999}', "not valid JSON"),
    (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"a": 1, "a": 2}', "appears twice"),
    (b"[1]", "must be a JSON object"),
])
def test_strict_json(text, words):
    _, data = split(net())
    refused(repack(None, data, text=text), "manifest", words)


# --- int64 holes -----------------------------------------------------------------------------

def test_pow2_weight_int64_min_refused():
    w = np.zeros((2, 1, 3, 3), np.int64)
    w[1, 0, 2, 2] = -2 ** 63
    refused(net(weight=w, conv={"weight_kind": "pow2", "weight_bits": 4}), "node 'c'",
            "weight[1, 0, 2, 2] = -9223372036854775808")


def test_bias_range_checked():
    refused(net(bias=np.array([0, 2 ** 50], np.int64)), "node 'c'", "accumulator limit",
            "1,125,899,906,843,776")
    refused(net(bias=np.array([0, -2 ** 63], np.int64)), "node 'c'", "accumulator limit")


def test_wide_inputs_and_weights_refused():
    refused(net(in_bits=32), "node 'x'", "attribute 'bits'")
    refused(net(conv={"weight_bits": 32}), "node 'c'", "'weight_bits'")


def test_accumulator_overflow_refused_with_numbers():
    # 16-bit inputs, 16-bit weights, fan-in 512 * 16 * 16: sums reach 2**50.
    w = np.full((1, 512, 16, 16), -2 ** 15, np.int16)
    blob = net(in_shape=(512, 16, 16), in_bits=16, weight=w,
               conv={"kernel": 16, "padding": 0, "weight_bits": 16})
    refused(blob, "node 'c'", "48-bit accumulator limit", "[-")


def test_add_chain_overflow_refused():
    nodes = [{"name": "x", "op": "input", "inputs": [],
              "attrs": {"shape": [4], "bits": 16, "signed": True}}]
    prev = "x"
    for i in range(40):
        nodes.append({"name": f"a{i}", "op": "add", "inputs": [prev, prev]})
        prev = f"a{i}"
    refused(pack(nodes, [prev], {}), "48-bit accumulator limit")


def test_internal_op_refused_in_files():
    nodes = [{"name": "x", "op": "input", "inputs": [],
              "attrs": {"shape": [4], "bits": 4, "signed": False}},
             {"name": "d", "op": "pow2_decode", "inputs": ["x"]}]
    refused(pack(nodes, ["d"], {}), "node 'd'", "op 'pow2_decode' is inserted by the compiler")


def test_pow2_value_does_not_wrap():
    assert int(golden.pow2_value(63)) == 2 ** 62
    with pytest.raises(ValueError, match="pow2 codes"):
        golden.pow2_value(64)
    with pytest.raises(ValueError):
        golden.level_targets(20, False, "pow2")


def test_wide_pow2_requant_named_by_its_bits():
    refused(net(rq={"bits": 20, "levels": "pow2"}), "node 'q'", "attribute 'bits' = 20")
    refused(net(rq={"bits": 5, "levels": "pow2"}), "node 'q'", "attribute 'bits' = 5",
            "power-of-two activation codes take 1 to 4 bits")


# --- files, metadata, names, channels --------------------------------------------------------

def test_only_regular_files_are_read(tmp_path):
    if os.path.exists("/dev/zero"):
        with pytest.raises(QpkError, match="not a regular file"):
            qpk.load("/dev/zero")
    fifo = tmp_path / "pipe.qpk"
    os.mkfifo(fifo)
    with pytest.raises(QpkError, match="not a regular file"):
        qpk.load(fifo)


def test_only_the_file_size_limit_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.qpk"
    path.write_bytes(net() + b"\0" * 4096)
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 1024)
    with pytest.raises(QpkError, match="larger than the 1,024-byte limit"):
        qpk.load(path)


@pytest.mark.parametrize("metadata,words", [
    ({"output_scale": "0.1"}, "'output_scale' must be a positive number"),
    ({"output_scale": [0.1]}, "'output_scale'"),
    ({"input_scale": -1.0}, "'input_scale'"),
    ({"weight_forms": []}, "written by the compiler"),
])
def test_known_metadata_type_checked(metadata, words):
    blob = _edit(net(), lambda m: m["metadata"].update(metadata))
    refused(blob, "metadata", words)


def test_free_form_metadata_stays_free():
    blob = _edit(net(), lambda m: m["metadata"].update(anything=[1, {"b": None}],
                                                       output_scale=0.5))
    assert qpk.from_bytes(blob).metadata["anything"] == [1, {"b": None}]


@pytest.mark.parametrize("producer,words", [
    ({"name": 7}, "producer: field 'name'"),
    ({"name": "a\x00b"}, "control character"),
    ("shiftadd", "field 'producer' must be an object"),
])
def test_producer_type_checked(producer, words):
    refused(_edit(net(), lambda m: m.update(producer=producer)), words)


@pytest.mark.parametrize("name,words", [
    ("c\x00d", "not a name"), ("c" * 256, "characters long"), ("c.sums", "not a name"),
    ("1c", "not a name"), ("", "not a name"), ("C", "differs only in case"),
])
def test_node_names(name, words):
    def rename(m):
        m["nodes"][0]["name"] = name
        m["nodes"][1]["inputs"] = [name]
    refused(_edit(net(), rename), words)


def test_zero_output_channels_refused():
    blob = _edit(net(), lambda m: m["tensors"]["c.weight"].update(shape=[0, 1, 3, 3], nbytes=0))
    refused(blob, "tensor 'c.weight'", "field 'shape'")


def test_inspect_survives_any_accepted_metadata(tmp_path):
    path = tmp_path / "m.qpk"
    path.write_bytes(_edit(net(), lambda m: m["metadata"].update(output_scale=3)))
    proc = subprocess.run([sys.executable, "-m", "compiler", "inspect", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "output scale: 3" in proc.stdout


def test_writer_refuses_what_the_reader_refuses():
    g = qpk.from_bytes(net())
    g["q"].attrs["bits"] = 13
    with pytest.raises(Exception, match="attribute 'bits'"):
        qpk.to_bytes(g)


def test_retensor_keeps_checksums_right():
    m, data = split(net())
    arrays = {"c.weight": np.full((2, 1, 3, 3), 7, np.int8),
              "q.multiplier": np.full(2, 0.1), "q.offset": np.zeros(2)}
    m, data = retensor(m, arrays)
    assert qpk.from_bytes(repack(m, data))["c"].tensors["weight"].max() == 7
    assert math.isfinite(0.1)


@pytest.mark.parametrize("value", [2 ** 1024, 10 ** 400], ids=["2**1024", "10**400"])
def test_integer_too_large_for_a_float_attribute(value):
    refused(net(rq={"scale": value}), "node 'q'", "attribute 'scale'", "too large for a float")


def test_damage_outside_the_checksums_is_refused():
    blob = bytearray(net())
    _, _, _, _, mlen, _, _ = container.HEADER.unpack_from(blob)
    pad = container.HEADER.size + mlen          # first padding byte after the manifest
    assert pad % 64
    bad = bytearray(blob)
    bad[pad] = 1
    refused(bytes(bad), "manifest", "padding after the manifest is not zero")
    bad = bytearray(blob)
    bad[-1] = 1                                 # the zero fill after the last tensor
    refused(bytes(bad), "data", "bytes outside every tensor are not zero")


def test_sorted_thresholds_at_the_int64_ends_accepted():
    # np.diff of -2**63 and 2**63 - 1 wrapped around and called them decreasing.
    th = np.array([[-2 ** 63, 2 ** 63 - 1, 2 ** 63 - 1]], np.int64)
    nodes = [{"name": "x", "op": "input", "inputs": [],
              "attrs": {"shape": [1], "bits": 8, "signed": True}},
             {"name": "t", "op": "threshold", "inputs": ["x"],
              "attrs": {"bits": 2, "signed": False}, "tensors": {"thresholds": "t.th"}}]
    g = qpk.from_bytes(pack(nodes, ["t"], {"t.th": th}))
    assert (g["t"].lo, g["t"].hi) == (1, 1)


def test_thresholds_beyond_the_input_range_are_clamped_exactly():
    from compiler.ir import interpret
    from compiler.passes import prepare
    th = np.array([[-2 ** 63, -5, 2 ** 40]], np.int64)
    nodes = [{"name": "x", "op": "input", "inputs": [],
              "attrs": {"shape": [1], "bits": 8, "signed": True}},
             {"name": "t", "op": "threshold", "inputs": ["x"],
              "attrs": {"bits": 2, "signed": False}, "tensors": {"thresholds": "t.th"}}]
    g = qpk.from_bytes(pack(nodes, ["t"], {"t.th": th}))
    p = prepare(g)
    assert p["t"].tensors["thresholds"].tolist() == [[-128, -5, 128]]
    x = np.arange(-128, 128).reshape(-1, 1)
    np.testing.assert_array_equal(interpret.run(p, x), interpret.run(g, x))


def test_huge_integers_where_numbers_belong():
    refused(net(conv={"weight_scale": 10 ** 400}), "node 'c'", "attribute 'weight_scale'")
    refused(net(conv={"weight_scale": [0.1, 2 ** 1024]}), "node 'c'", "'weight_scale'")
    refused(_edit(net(), lambda m: m["metadata"].update(output_scale=10 ** 400)),
            "metadata", "'output_scale' must be a positive number")


def test_writer_refuses_metadata_and_ranges_the_reader_refuses():
    from compiler.errors import GraphError
    g = qpk.from_bytes(net())
    g.metadata["output_scale"] = "0.1"
    with pytest.raises(GraphError, match="metadata: field 'output_scale'"):
        qpk.to_bytes(g)
    g = qpk.from_bytes(net(bias=np.array([0, 2 ** 40], np.int64)))
    g["c"].tensors["bias"] = np.array([0, 2 ** 50], np.int64)
    with pytest.raises(GraphError, match="node 'c': its partial sums"):
        qpk.to_bytes(g)


def test_a_directory_is_named_as_such(tmp_path):
    with pytest.raises(QpkError, match="is a directory, not a .qpk file"):
        qpk.load(tmp_path)
