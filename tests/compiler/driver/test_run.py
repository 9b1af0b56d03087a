"""`python -m compiler run`: inputs to a board and back, here on the virtual board
(the build's accel.v behind the board's UART bridge in Verilator), and its errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from compiler import qpk
from compiler.driver.inputs import read_inputs
from compiler.driver.run import top_classes
from compiler.ir import interpret
from compiler.passes import prepare
from compiler.zoo import zoo_path


SIM_CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def sim_cache(tmp_path_factory):
    # One Verilator build of the virtual board for every xdist worker of the run.
    SIM_CACHE["dir"] = tmp_path_factory.getbasetemp().parent / "uart-board"


def run(*args, timeout=900):
    env = {**os.environ, "SHIFTADD_SIM_CACHE": str(SIM_CACHE["dir"])}
    p = subprocess.run([sys.executable, "-m", "compiler", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def user_error(rc, out, err, *needles):
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    rc, _, err = run("build", "digits_cnn_ternary", "--board", "ulx3s", "--verify", "0",
                     "--no-synth", "-o", out)
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def digits_inputs(tmp_path_factory):
    from compiler.frontend.data import digits
    _, test = digits()
    path = tmp_path_factory.mktemp("inputs") / "digits.npz"
    np.savez(path, x=test.x.numpy()[:12], y=test.y.numpy()[:12])
    return path


def test_build_carries_the_model_and_the_uart_format(digits_build):
    build = json.loads((digits_build / "build.json").read_text())
    assert build["engine"] == "dataflow"
    assert build["virtual_board"] == {"verilog": "accel.v", "module": "accel"}
    graph = qpk.load(digits_build / build["model_file"])
    assert graph.input.attrs["shape"] == [1, 8, 8]
    uart = json.loads((digits_build / "board" / "board.json").read_text())["uart"]
    assert uart["input"]["lanes"] == 1 and uart["output"]["lanes"] == 10


def test_run_on_the_virtual_board_is_bit_exact(digits_build, digits_inputs):
    rc, out, err = run("run", digits_build, "--port", "sim", "--input", digits_inputs,
                       "--compare", "--top", "2")
    assert rc == 0, err
    graph = qpk.load(zoo_path("digits_cnn_ternary"))
    x, y = read_inputs(digits_inputs, graph)
    expected = interpret.run(prepare(graph), x)
    lines = [line for line in out.splitlines() if line.startswith("input ")]
    assert len(lines) == 12
    for k, line in enumerate(lines):
        best = top_classes(expected[k], 2)
        assert line.startswith(f"input {k}: {best[0][0]} ({best[0][1]}), "
                               f"{best[1][0]} ({best[1][1]})"), line
        assert f"label {y[k]}" in line
    right = int(np.sum(expected.argmax(axis=1) == y))
    assert f"accuracy: {right / 12:.1%} ({right} of 12)" in out
    assert "all 12 outputs equal the golden model's" in out
    assert "inferences/s (virtual board)" in out


def test_run_on_the_layer_engines_virtual_board_is_bit_exact(tmp_path):
    # The engine with its flash reader and the flash model holding weights.bin, behind
    # the UART bridge: logits come back one a beat.
    from graphs import engine_net
    graph = engine_net(np.random.default_rng(0))
    qpk.save(graph, tmp_path / "net.qpk")
    rc, _, err = run("build", tmp_path / "net.qpk", "--engine", "layer", "--board",
                     "arty_a7_100", "--verify", "0", "--no-synth", "-o", tmp_path / "b")
    assert rc == 0, err
    build = json.loads((tmp_path / "b" / "build.json").read_text())
    assert build["virtual_board"]["module"] == "engine_sim"
    assert "flash_clk" in build["virtual_board"]["clocks"]
    x = np.random.default_rng(1).integers(-128, 128, size=(3, 1, 8, 8))
    np.save(tmp_path / "x.npy", x)
    rc, out, err = run("run", tmp_path / "b", "--port", "sim", "--input", tmp_path / "x.npy",
                       "--compare", "--top", "1")
    assert rc == 0, err
    expected = interpret.run(prepare(graph), x)
    lines = [line for line in out.splitlines() if line.startswith("input ")]
    assert lines == [f"input {k}: {c} ({v})" for k in range(3)
                     for c, v in top_classes(expected[k], 1)]
    assert "all 3 outputs equal the golden model's" in out


def test_run_takes_npy_integers_and_images(digits_build, tmp_path):
    from PIL import Image
    graph = qpk.load(zoo_path("digits_cnn_ternary"))
    ints = np.random.default_rng(0).integers(-128, 128, size=(2, 1, 8, 8))
    np.save(tmp_path / "x.npy", ints)
    x, y = read_inputs(tmp_path / "x.npy", graph)
    assert y is None and np.array_equal(x, ints)
    pixels = np.zeros((8, 8), np.uint8)
    pixels[2:7, 4] = 255                                 # a "1": pixels 0 .. 255 -> -1 .. 1
    pixels[1, 3] = 128
    Image.fromarray(pixels).save(tmp_path / "one.png")
    x, _ = read_inputs(tmp_path / "one.png", graph)
    scale = graph.input.attrs["scale"]
    want = np.clip(np.round((pixels / 255.0 * 2 - 1) / scale), -128, 127)
    assert x.shape == (1, 1, 8, 8) and np.array_equal(x[0, 0], want)
    Image.fromarray(np.kron(pixels, np.ones((3, 3), np.uint8))).save(tmp_path / "big.png")
    x, _ = read_inputs(tmp_path / "big.png", graph)          # resized to the model's 8x8
    assert x.shape == (1, 1, 8, 8) and x[0, 0, 4, 4] > 0 and x[0, 0, 4, 0] == -127
    rc, out, err = run("run", digits_build, "--port", "sim", "--input", tmp_path / "one.png",
                       "--compare", "--limit", "1")
    assert rc == 0, err
    assert "input 0: " in out and "all 1 outputs equal the golden model's" in out


@pytest.mark.parametrize("make,needle", [
    (lambda p: np.save(p / "bad.npy", np.zeros((2, 1, 7, 8))),
     "inputs of shape [2, 1, 7, 8]; the model takes [1, 8, 8]"),
    (lambda p: np.save(p / "bad.npy", np.full((1, 1, 8, 8), 300)),
     "input 0 has integers outside the model's 8-bit signed range [-128, 127]"),
    (lambda p: (p / "bad.npy").write_bytes(b"not numpy"), "cannot read as .npy"),
    (lambda p: np.savez(p / "bad.npz", z=np.zeros(3)), "no array 'x' (found: z)"),
    (lambda p: (p / "bad.txt").write_text("1 2 3"), "expected an .npz"),
])
def test_bad_inputs_are_one_line(digits_build, tmp_path, make, needle):
    make(tmp_path)
    bad = next(tmp_path.glob("bad.*"))
    user_error(*run("run", digits_build, "--port", "sim", "--input", bad), needle)


def test_wrong_build_directory(tmp_path, digits_inputs):
    user_error(*run("run", tmp_path / "nowhere", "--port", "sim", "--input", digits_inputs),
               "no such build directory")
    user_error(*run("run", tmp_path, "--port", "sim", "--input", digits_inputs),
               "build.json: no such file")


def test_build_json_cannot_point_outside(digits_build, tmp_path, digits_inputs):
    import shutil
    copy = tmp_path / "b"
    shutil.copytree(digits_build, copy, ignore=shutil.ignore_patterns("sim"))
    build = json.loads((copy / "build.json").read_text())
    build["model_file"] = "../../etc/passwd"
    (copy / "build.json").write_text(json.dumps(build))
    user_error(*run("run", copy, "--port", "sim", "--input", digits_inputs),
               "'model_file' points outside the build directory")


def test_missing_port(digits_build, digits_inputs):
    user_error(*run("run", digits_build, "--port", "/dev/no-such-tty", "--input",
                    digits_inputs), "/dev/no-such-tty: cannot open the serial port")


def test_busy_port(digits_build, digits_inputs):
    import serial
    controller, device = os.openpty()
    name = os.ttyname(device)
    with serial.Serial(name, 115200, exclusive=True):
        user_error(*run("run", digits_build, "--port", name, "--input", digits_inputs),
                   f"{name}: cannot open the serial port")
    os.close(controller)
    os.close(device)


def test_silent_board(digits_build, digits_inputs):
    # A terminal nobody answers on: the bytes go out, nothing comes back.
    controller, device = os.openpty()
    name = os.ttyname(device)
    try:
        user_error(*run("run", digits_build, "--port", name, "--input", digits_inputs,
                        "--timeout", "0.5"),
                   "input 0: the board did not answer: the board sent 0 of 20 bytes")
    finally:
        os.close(controller)
        os.close(device)


def test_top_classes_names_and_ties():
    assert top_classes([3, 7, 7, -1], 3) == [(1, 7), (2, 7), (0, 3)]
    assert top_classes([3, 7, 7, -1], 2, ["cat", "dog", "owl", "ant"]) == [("dog", 7), ("owl", 7)]
