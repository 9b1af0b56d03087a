"""Forged packages (checksums recomputed) and damaged bytes: the reader's own error or a graph.

2,000 seeded variants of bench.qpk_forge plus Hypothesis-chosen JSON in every
manifest field; accepted packages are also prepared and planned, which may only
refuse them with a UserError. ``python -m bench.fuzz_qpk`` runs 100,000 and
the CLI on a sample.
"""

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))     # the repository root

from bench import fuzz_qpk, qpk_forge  # noqa: E402
from compiler import qpk  # noqa: E402
from compiler.errors import QpkError, UserError  # noqa: E402

SEEDS = qpk_forge.seed_packages()


def test_seeds_are_valid_and_cover_every_weight_kind():
    kinds = set()
    for name, blob in SEEDS.items():
        g = qpk.from_bytes(blob, name)
        kinds |= {n.attrs.get("weight_kind") for n in g.nodes} - {None}
    assert kinds == {"ternary", "pow2", "int", "ternary2", "codebook"}
    assert any(n.attrs.get("levels") == "pow2" for b in SEEDS.values()
               for n in qpk.from_bytes(b).nodes)


def test_forged_variants_end_in_qpkerror_or_a_graph():
    res = fuzz_qpk.fuzz(2000, seed=0, seeds=SEEDS, plan=25)
    assert res.variants == 2000
    assert not res.other, fuzz_qpk.render(res)
    # The forger reaches far: most variants are refused, some pass, across many fields.
    assert res.accepted >= 20 and sum(res.refused.values()) >= 1500
    assert len(res.refused) >= 40


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(derandomize=True, max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(SEEDS)), where=st.integers(min_value=0), value=JSON)
def test_any_json_in_any_field(seed, where, value):
    m, data = qpk_forge.split(SEEDS[seed])
    paths = qpk_forge._paths(m)
    obj, key = paths[where % len(paths)]
    obj[key] = value
    blob = qpk_forge.repack(m, data)
    try:
        graph = qpk.from_bytes(blob, "h.qpk")
    except QpkError:
        return
    try:
        fuzz_qpk._plan(graph)
    except UserError:
        pass


@settings(derandomize=True, max_examples=200, deadline=None)
@given(seed=st.sampled_from(sorted(SEEDS)), cut=st.integers(min_value=0),
       insert=st.binary(max_size=8), flip=st.integers(min_value=0))
def test_any_byte_damage(seed, cut, insert, flip):
    blob = bytearray(SEEDS[seed])
    blob[flip % len(blob)] ^= 1 << (flip % 8)
    pos = cut % (len(blob) + 1)
    blob[pos:pos] = insert
    with pytest.raises(QpkError):
        qpk.from_bytes(bytes(blob), "b.qpk")


def test_field_groups_name_where_and_what():
    m, data = qpk_forge.split(SEEDS["small_ternary_linear"])
    m["nodes"][1]["attrs"]["kernel"] = 99
    with pytest.raises(QpkError) as info:
        qpk.from_bytes(qpk_forge.repack(m, data))
    assert fuzz_qpk.field_group(info.value) == "node: attribute kernel"
    assert json.loads(json.dumps(m))
