"""compiler/limits.py and the Limits table of docs/qpk.md say the same."""

import re
from pathlib import Path

from compiler import limits

DOC = Path(__file__).resolve().parents[2] / "docs" / "qpk.md"


def _doc_rows():
    text = DOC.read_text()
    section = text.split("## Limits", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([A-Z0-9_]+(?:\[\"[a-z0-9]+\"\])?)` \| (.+?) \| (.+) \|$", line)
        if m:
            rows[m[1]] = (m[2], m[3])
    return rows


def _format(value):
    if isinstance(value, tuple):
        return f"{value[0]} to {value[1]}"
    if isinstance(value, str):
        return f"`{value}`"
    return f"{value:,}"


def _module_rows():
    rows = {}
    for name in dir(limits):
        if not name.isupper():
            continue
        value = getattr(limits, name)
        if isinstance(value, dict):
            rows.update({f'{name}["{k}"]': _format(v) for k, v in value.items()})
        else:
            rows[name] = _format(value)
    return rows


def test_table_and_module_agree():
    doc = _doc_rows()
    module = _module_rows()
    assert set(doc) == set(module)
    for name, text in module.items():
        assert doc[name][0] == text, name
        assert len(doc[name][1]) > 5, f"{name}: say why"


def test_every_group_has_a_docstring():
    source = Path(limits.__file__).read_text()
    for name in _module_rows():
        base = name.split("[")[0]
        if base in ("ACC_MIN", "ACC_MAX"):
            continue
        before = source.split(f"\n{base} =", 1)[0].rstrip().splitlines()[-1]
        assert before.startswith("#:") or before.startswith("#"), base
