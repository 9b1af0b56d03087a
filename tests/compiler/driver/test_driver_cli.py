"""The command line as a user meets it: tables, progress, and one-line errors."""

import json
import subprocess
import sys

import pytest

from compiler.zoo import zoo_path


def run(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "compiler", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


def user_error(rc, out, err, *needles):
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in err, err


def test_inspect_prints_a_table():
    rc, out, err = run("inspect", "digits_cnn_ternary")
    assert rc == 0, err
    assert "| node" in out and "MACs" in out and "total" in out
    assert "ternary" in out and "weight storage" in out


def test_zoo_lists_models_with_descriptions():
    rc, out, _ = run("zoo")
    assert rc == 0 and "digits_cnn_ternary" in out and "TWN ternary" in out


def test_unknown_board(tmp_path):
    user_error(*run("build", "digits_cnn_ternary", "--board", "de10", "-o", tmp_path / "b"),
               "de10", "arty_a7")


def test_model_that_does_not_fit_is_refused_before_synthesis(tmp_path):
    rc, out, err = run("build", "digits_cnn_ternary", "--board", "icebreaker", "--weights",
                       "hardwired", "--verify", "0", "-o", tmp_path / "b")
    user_error(rc, out, err, "does not fit icebreaker", "needs ~", "has 5280", "To fit")
    assert not (tmp_path / "b" / "accel.v").exists()


@pytest.mark.parametrize("damage,needle", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b[:-10] + bytes(10), "checksum"),
    (lambda b: b"not a package at all", "not a .qpk file"),
])
def test_damaged_package(tmp_path, damage, needle):
    path = tmp_path / "bad.qpk"
    path.write_bytes(damage(zoo_path("digits_cnn_ternary").read_bytes()))
    rc, out, err = run("build", path, "--board", "ulx3s", "-o", tmp_path / "b")
    user_error(rc, out, err, str(path))
    assert needle in err.lower(), err


def test_missing_model(tmp_path):
    user_error(*run("build", tmp_path / "nope.qpk"), "nope.qpk")


def test_flash_without_a_build(tmp_path):
    user_error(*run("flash", tmp_path, "--dry-run"), str(tmp_path))


def test_build_writes_everything_without_synthesis(tmp_path):
    rc, out, err = run("build", "digits_cnn_pow2", "--board", "ulx3s", "--weights", "rom",
                       "--verify", "0", "--no-synth", "--clock", "75", "-o", tmp_path / "b")
    assert rc == 0, err
    # --clock: the plan, the report and the PLL's constraint all at 75 MHz.
    assert "cycles per inference at 75 MHz" in out
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["board"]["clock_mhz"] == 75 and report["options"]["clock_mhz"] == 75
    assert report["timing_met"] is None                   # nothing placed, nothing timed
    lpf = (tmp_path / "b" / "board" / "top.lpf").read_text()
    assert 'FREQUENCY NET "clock.pll_sync_clk" 75000000.0 HZ;' in lpf
    for step in range(1, 7):
        assert f"[{step}/6]" in out
    names = {p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*")}
    assert {"accel.v", "weights.bin", "report.md", "report.json", "build.json"} <= names
    assert any(n.startswith("weights/") for n in names) and any(n.startswith("board/")
                                                                 for n in names)


@pytest.mark.parametrize("args,needle", [
    (["--verify", "-1"], "--verify: must be >= 0"),
    (["--verify", "two"], "--verify: expected a whole number"),
    (["--target-cycles", "0"], "--target-cycles: must be >= 1"),
    (["--seed", "-3"], "--seed: must be >= 0"),
    (["-o", ""], "must not be empty"),
    (["--fold", "conv1=2x1", "--fold", "conv1=1x1"], "given twice"),
    (["--fold", "conv1=0x1"], "expected LAYER=PExSIMD"),
    (["--clock", "fast"], "--clock: expected a frequency in MHz"),
    (["--clock", "0.5"], "--clock: expected 1 to 1000 MHz"),
    (["--board", "icebreaker", "--clock", "1.2"], "--clock 1.2 MHz: icebreaker's PLL cannot"),
    (["--baud", "13000000"], "--baud: 13000000 baud is faster than arty_a7_35's USB-UART"),
    (["--baud", "12000000"], "--baud: 12000000 baud is 4.2% off at 100 MHz"),
    (["--baud", "0"], "--baud: must be >= 1"),
])
def test_bad_build_arguments_are_one_line(tmp_path, args, needle):
    rc, out, err = run("build", "digits_cnn_ternary", "--no-synth", "-o", tmp_path / "b", *args)
    assert rc != 0 and "Traceback" not in err + out, err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@pytest.mark.parametrize("where,needle", [
    (lambda t: t / "file.txt", "is a file"),
    (lambda t: t / "file.txt" / "b", "is under"),
    (lambda t: "/proc/shiftadd-out", "cannot create"),
])
def test_bad_output_directories_are_one_line(tmp_path, where, needle):
    (tmp_path / "file.txt").write_text("mine")
    rc, out, err = run("build", "digits_cnn_ternary", "--verify", "0", "--no-synth",
                       "-o", where(tmp_path))
    user_error(rc, out, err, needle)
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_build_keeps_the_users_files(tmp_path):
    out_dir = tmp_path / "b"
    (out_dir / "weights").mkdir(parents=True)
    (out_dir / "weights" / "ckpt.pt").write_bytes(b"precious")
    common = ["build", "digits_cnn_pow2", "--board", "ulx3s", "--weights", "rom", "--verify", "0",
              "--no-synth", "-o", out_dir]
    user_error(*run(*common), "did not write", "--force")
    rc, out, err = run(*common, "--force")
    assert rc == 0, err
    assert (out_dir / "weights" / "ckpt.pt").read_bytes() == b"precious"
    assert any(p.suffix == ".hex" for p in (out_dir / "weights").iterdir())
    # A second build into its own directory needs no --force and keeps the user's file too.
    rc, out, err = run(*common)
    assert rc == 1 and "ckpt.pt" in err          # still foreign: still refused without --force
    rc, out, err = run(*common[:-1], tmp_path / "c")
    assert rc == 0, err
    rc, out, err = run(*common[:-1], tmp_path / "c")
    assert rc == 0, err


def test_unreachable_target_is_reported(tmp_path):
    rc, out, err = run("build", "digits_cnn_ternary", "--board", "ulx3s", "--weights", "hardwired",
                       "--target-cycles", "1", "--verify", "0", "--no-synth", "-o", tmp_path / "b")
    assert rc == 0, err
    assert "target 1 cycle per inference not reachable; best is 100 because" in out, out
    import json
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["plan_met"] is False and "not reachable" in report["warnings"][0]
