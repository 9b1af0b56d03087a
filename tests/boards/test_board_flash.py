"""flash(): command lines from the manifest, clear errors, and a real invocation of a
fake openFPGALoader."""

import os

import pytest

from boards import (FLASH_LAYOUTS, BoardError, flash, flash_commands, flash_plan, weights_image,
                    write_manifest)


def make_build(path, board="ulx3s", loader="ulx3s", bitstream="top.bit", sram_load=True,
               images=(), bitstream_file=None):
    path.mkdir(parents=True, exist_ok=True)
    if bitstream:
        (path / bitstream).write_bytes(b"bits")
    write_manifest(path, {"board": board, "loader_board": loader, "bitstream": bitstream,
                          "bitstream_file": bitstream_file or bitstream or "top.bit",
                          "sram_load": sram_load, "toolchain": "x",
                          "flash_images": list(images)})
    return path


def test_dry_run_sram_and_flash(tmp_path):
    build_dir = make_build(tmp_path / "b")
    bit = str(build_dir / "top.bit")
    lines = []
    assert flash(build_dir, dry_run=True, progress=lines.append) == [
        ["openFPGALoader", "-b", "ulx3s", bit]]
    assert lines == [f"openFPGALoader -b ulx3s {bit}"]
    assert flash(build_dir, to_flash=True, dry_run=True, progress=lines.append) == [
        ["openFPGALoader", "-b", "ulx3s", "-f", bit]]
    assert flash_commands(build_dir, cable="ft2232") == [
        ["openFPGALoader", "-b", "ulx3s", "-c", "ft2232", bit]]


def test_icebreaker_always_writes_flash(tmp_path):
    build_dir = make_build(tmp_path / "ice", "icebreaker", "ice40_generic", "top.bin",
                           sram_load=False)
    lines = []
    assert flash(build_dir, dry_run=True, progress=lines.append) == [
        ["openFPGALoader", "-b", "ice40_generic", "-f", str(build_dir / "top.bin")]]
    assert "can only write this board's SPI flash" in lines[0]


def test_flash_images_go_first(tmp_path):
    build_dir = make_build(tmp_path / "w", images=[{"path": "weights.bin", "offset": 0x200000}])
    (build_dir / "weights.bin").write_bytes(b"\x01\x02")
    assert flash_commands(build_dir) == [
        ["openFPGALoader", "-b", "ulx3s", "-f", "--file-type", "bin", "-o", "0x200000",
         str(build_dir / "weights.bin")],
        ["openFPGALoader", "-b", "ulx3s", str(build_dir / "top.bit")]]
    (build_dir / "weights.bin").unlink()
    with pytest.raises(BoardError, match="weights.bin: flash image missing"):
        flash_commands(build_dir)


def test_compiler_build_dir_with_board_subdirectory(tmp_path):
    make_build(tmp_path / "model-ulx3s" / "board")
    assert flash_commands(tmp_path / "model-ulx3s") == [
        ["openFPGALoader", "-b", "ulx3s", str(tmp_path / "model-ulx3s" / "board" / "top.bit")]]


def test_arty_without_vivado_says_how_to_get_a_bitstream(tmp_path):
    build_dir = make_build(tmp_path / "arty", "arty_a7_35", "arty_a7_35t", bitstream=None)
    with pytest.raises(BoardError) as err:
        flash(build_dir, dry_run=True)
    message = str(err.value)
    assert "\n" not in message
    assert "arty_a7_35 needs Vivado, which was not found" in message
    assert "sh build_top.sh" in message
    # a bitstream made from the plan by hand, later, is found
    (build_dir / "top.bit").write_bytes(b"bits")
    assert flash_commands(build_dir) == [
        ["openFPGALoader", "-b", "arty_a7_35t", str(build_dir / "top.bit")]]


def test_other_missing_bitstreams(tmp_path):
    plan_only = make_build(tmp_path / "p", bitstream=None)
    with pytest.raises(BoardError, match="the toolchain was not run"):
        flash(plan_only, dry_run=True)
    gone = make_build(tmp_path / "g")
    (gone / "top.bit").unlink()
    with pytest.raises(BoardError, match=r"top.bit: bitstream missing"):
        flash(gone, dry_run=True)
    with pytest.raises(BoardError, match="no such build directory"):
        flash(tmp_path / "nope", dry_run=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BoardError, match="no board.json here"):
        flash(tmp_path / "empty", dry_run=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "board.json").write_text("{not json")
    with pytest.raises(BoardError, match="unreadable manifest"):
        flash(tmp_path / "bad", dry_run=True)


def test_openfpgaloader_not_installed(tmp_path, monkeypatch):
    build_dir = make_build(tmp_path / "b")
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BoardError, match=r"^openFPGALoader not found; apt-get install "
                                         r"openfpgaloader, or set \$OPENFPGALOADER to its path$"):
        flash(build_dir, progress=lambda s: None)
    # a dry run needs no loader
    assert flash(build_dir, dry_run=True, progress=lambda s: None)


def fake_loader(bindir, rc=0):
    bindir.mkdir()
    script = bindir / "openFPGALoader"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{bindir}/calls.txt"\nexit {rc}\n')
    script.chmod(0o755)
    return bindir


def test_real_invocation_with_fake_loader(tmp_path, monkeypatch):
    build_dir = make_build(tmp_path / "b", images=[{"path": "weights.bin", "offset": 0x400000}])
    (build_dir / "weights.bin").write_bytes(b"w")
    bindir = fake_loader(tmp_path / "bin")
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    flash(build_dir, to_flash=True, progress=lambda s: None)
    assert (bindir / "calls.txt").read_text().splitlines() == [
        f"-b ulx3s -f --file-type bin -o 0x400000 {build_dir / 'weights.bin'}",
        f"-b ulx3s -f {build_dir / 'top.bit'}"]


def test_loader_failure_is_a_clear_error(tmp_path, monkeypatch):
    build_dir = make_build(tmp_path / "b")
    bindir = fake_loader(tmp_path / "bin", rc=1)
    monkeypatch.setenv("OPENFPGALOADER", str(bindir / "openFPGALoader"))
    with pytest.raises(BoardError, match=r"openFPGALoader failed \(exit status 1\); is the "
                                         r"board plugged in"):
        flash(build_dir, progress=lambda s: None)


def test_weights_in_quad_mode_on_the_arty_set_quad_enable_first(tmp_path):
    build_dir = make_build(tmp_path / "a", "arty_a7_35", "arty_a7_35t",
                           images=[weights_image("arty_a7_35", "weights.bin")])
    (build_dir / "weights.bin").write_bytes(bytes(1000))
    lines = []
    assert flash(build_dir, dry_run=True, progress=lines.append) == [
        ["openFPGALoader", "-b", "arty_a7_35t", "--enable-quad"],
        ["openFPGALoader", "-b", "arty_a7_35t", "-f", "--file-type", "bin", "-o", "0x400000",
         str(build_dir / "weights.bin")],
        ["openFPGALoader", "-b", "arty_a7_35t", str(build_dir / "top.bit")]]
    assert lines == [" ".join(argv) for argv in flash_commands(build_dir)]
    # an image read in single mode needs no quad-enable
    plain = make_build(tmp_path / "p", "arty_a7_35", "arty_a7_35t",
                       images=[{"path": "weights.bin", "offset": 0x400000}])
    (plain / "weights.bin").write_bytes(bytes(10))
    assert [argv[3] for argv in flash_commands(plain)][:1] == ["-f"]


def test_ulx3s_says_why_it_cannot_set_quad_enable(tmp_path):
    build_dir = make_build(tmp_path / "u", images=[weights_image("ulx3s", "weights.bin")])
    (build_dir / "weights.bin").write_bytes(bytes(1000))
    commands, notes = flash_plan(build_dir)
    assert not any("--enable-quad" in argv for argv in commands)
    assert len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith("ulx3s: openFPGALoader cannot set the flash's quad-enable bit")
    lines = []
    flash(build_dir, dry_run=True, progress=lines.append)
    assert lines[0] == notes[0] and lines[1:] == [" ".join(argv) for argv in commands]


def test_images_must_clear_the_bitstream_and_fit_the_flash(tmp_path):
    low = make_build(tmp_path / "low", "arty_a7_100", "arty_a7_100t",
                     images=[{"path": "w.bin", "offset": 0x200000}])
    (low / "w.bin").write_bytes(b"w")
    with pytest.raises(BoardError, match=r"w.bin: offset 0x200000 is inside the bitstream "
                                         r"\(3,825,788 bytes from 0 on arty_a7_100\); use "
                                         r"0x400000$"):
        flash_commands(low)
    big = make_build(tmp_path / "big", images=[weights_image("ulx3s", "w.bin")])
    (big / "w.bin").write_bytes(bytes(12 * 2**20 + 1))
    with pytest.raises(BoardError, match=r"12,582,913 bytes at 0x400000 do not fit the 16 MiB "
                                         r"flash of ulx3s"):
        flash_commands(big)


def test_layouts_leave_room_past_every_bitstream():
    for name, layout in FLASH_LAYOUTS.items():
        assert layout.weights_offset % 0x10000 == 0                 # an erase-block boundary
        assert layout.weights_offset >= layout.bitstream_bytes + 256 * 1024, name
        assert layout.flash_bytes - layout.weights_offset >= 12 * 2**20, name

