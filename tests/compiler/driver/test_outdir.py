"""The output directory: nothing written outside it, nothing of the user's lost."""

import json
import os

import pytest

from compiler.errors import BuildError
from compiler.backends.dataflow.images import Rom
from compiler.driver.outdir import MANIFEST, OutputDir, safe_file_name

TRAVERSAL = ["../../../x", "/etc/x", "/tmp/abs", "a/../../b", "..", "x\0y", "n" * 300,
             "../" * 40 + "deep", "C:\\evil", "weights/../../up", "~/home", ". .", "$(rm -rf)"]


def files_under(root):
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("name", TRAVERSAL)
def test_names_from_a_package_become_safe_file_names(name):
    rom = Rom(f"{name}_weights", name, "weights", 8, [1, 2, 3], index=7)
    path = rom.hex_file
    assert path.startswith("weights/007_") and path.endswith("_weights.hex")
    stem = path[len("weights/"):-len(".hex")]
    assert "/" not in stem and "\\" not in stem and ".." not in stem and "\0" not in stem
    assert len(stem) <= 80
    assert safe_file_name(name) and set(safe_file_name(name)) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@pytest.mark.parametrize("name", TRAVERSAL)
def test_the_write_helper_refuses_paths_outside(tmp_path, name):
    sandbox = tmp_path / "sandbox"
    out = OutputDir(sandbox / "out")
    try:
        out.write_text(name, "x")
    except BuildError:
        pass
    # Whatever happened, nothing appeared outside the output directory.
    assert files_under(tmp_path) - {"sandbox", "sandbox/out"} <= {
        f"sandbox/out/{f}" for f in files_under(sandbox / "out")}
    assert not (tmp_path / "x").exists() and not (tmp_path / "sandbox" / "x").exists()


def test_a_symbolic_link_does_not_lead_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = OutputDir(tmp_path / "out")
    os.symlink(outside, tmp_path / "out" / "weights")
    with pytest.raises(BuildError, match="outside"):
        out.write_text("weights/a.hex", "x")
    assert not any(outside.iterdir())


def test_foreign_files_are_refused_and_kept(tmp_path):
    out_dir = tmp_path / "b"
    (out_dir / "weights").mkdir(parents=True)
    (out_dir / "weights" / "ckpt.pt").write_bytes(b"precious")
    with pytest.raises(BuildError, match="did not write.*--force"):
        OutputDir(out_dir)
    out = OutputDir(out_dir, force=True)
    out.write_text("weights/000_conv_weights.hex", "01\n")
    out.finish()
    assert (out_dir / "weights" / "ckpt.pt").read_bytes() == b"precious"


def test_a_rebuild_replaces_only_its_own_files(tmp_path):
    out_dir = tmp_path / "b"
    first = OutputDir(out_dir)
    first.write_text("weights/000_a_weights.hex", "1\n")
    first.write_text("accel.v", "module a; endmodule\n")
    first.finish()
    assert json.loads((out_dir / MANIFEST).read_text())["files"] == [
        "accel.v", "weights/000_a_weights.hex"]
    second = OutputDir(out_dir)          # no foreign files: accepted without --force
    second.write_text("accel.v", "module b; endmodule\n")
    second.finish()
    # The stale ROM image of the first build is gone; the directory it lived in stays.
    assert not (out_dir / "weights" / "000_a_weights.hex").exists()
    assert (out_dir / "weights").is_dir()


def test_a_forged_manifest_cannot_delete_outside(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out_dir = tmp_path / "b"
    out_dir.mkdir()
    (out_dir / MANIFEST).write_text(json.dumps(
        {"tool": "shiftadd build", "files": ["../victim.txt", str(victim)], "dirs": []}))
    out = OutputDir(out_dir)
    out.finish()
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("make,needle", [
    (lambda t: t / "file.txt", "is a file"),
    (lambda t: t / "file.txt" / "sub", "is under"),
])
def test_bad_output_directories(tmp_path, make, needle):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BuildError, match=needle):
        OutputDir(make(tmp_path))


def test_empty_output_directory_is_refused():
    with pytest.raises(BuildError, match="empty"):
        OutputDir("")


def test_output_directory_in_a_read_only_place():
    # /proc refuses new directories to everyone, root included.
    with pytest.raises(BuildError, match="cannot create"):
        OutputDir("/proc/shiftadd-build")
