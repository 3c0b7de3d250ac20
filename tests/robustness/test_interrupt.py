"""Ctrl-C (SIGINT) and SIGTERM on a real `lnca` batch: it stops after the current file, leaves only
complete outputs, exits 128 + the signal, and a rerun without --overwrite finishes the rest.

Where a signal must land inside a file, the batch's last input is stdin ('-'), fed more than a pipe
holds: once the test's write has gone through, lnca is reading that file, and it waits there for the
rest for as long as the test holds it, whatever the machine's speed. (Python runs a signal's handler
between reads: after each signal the test feeds lnca one more block, so that it gets to.)"""
import contextlib
import json
import os
import select
import signal
import subprocess

import pytest

from conftest import lnca, write_photo

from .conftest import argv, assert_complete_images, assert_no_traceback, temp_files

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

FILES = 20
SLOW = ["--steps", "1000"]  # about 1 s a file with the tiny model: the batch is still running when signalled


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(FILES):
        write_photo(folder / f"{i:02}.png", size=(96, 96), seed=i)
    return folder


def _start(photos, out, weights) -> subprocess.Popen:
    return subprocess.Popen(argv("denoise", photos, "-o", out, "-m", weights, "--json", *SLOW),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_first_file(proc: subprocess.Popen, timeout: float = 60) -> bytes:
    """The first JSON line: one file is done, and the signal handlers are in place."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail("lnca restored no file in time")
    return proc.stdout.readline()


def _statuses(stdout: bytes) -> dict[str, str]:
    return {os.path.basename(r["input"]): r["status"] for r in map(json.loads, stdout.splitlines())}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_after_the_current_file_and_a_rerun_finishes(photos, tmp_path, tiny_weights, signum):
    out = tmp_path / "out"
    proc = _start(photos, out, tiny_weights)
    first = _wait_for_first_file(proc)
    proc.send_signal(signum)
    rest, stderr = proc.communicate(timeout=60)
    stderr = stderr.decode()

    assert proc.returncode == 128 + signum, stderr
    assert_no_traceback(stderr)
    done = _statuses(first + rest)
    assert set(done.values()) == {"done"} and 1 <= len(done) < FILES
    assert f"stopped, interrupted by {signum.name}: {FILES - len(done)} of {FILES} files not started" in stderr
    assert "stopping after the current file" in stderr
    assert sorted(os.listdir(out)) == sorted(name.replace(".png", "_denoise.png") for name in done)
    assert_complete_images(out.iterdir())
    assert temp_files(tmp_path) == []

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    rerun = lnca("denoise", photos, "-o", out, "-m", tiny_weights, "--json")
    assert rerun.exit_code == 0, rerun.stderr
    statuses = _statuses(rerun.stdout.encode())
    assert {name for name, status in statuses.items() if status == "skipped"} == set(done)
    assert {name for name, status in statuses.items() if status == "done"} == set(statuses) - set(done)
    assert len(os.listdir(out)) == FILES
    assert_complete_images(out.iterdir())
    assert all(out.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in mtimes.items())


PIPE_HOLDS = 1 << 16


@pytest.fixture
def big_photo(tmp_path) -> bytes:
    write_photo(tmp_path / "big.png", size=(512, 512))  # noise: about 800 kB
    return (tmp_path / "big.png").read_bytes()


def _start_reading_stdin(photo, out, weights, image: bytes) -> subprocess.Popen:
    """`lnca denoise PHOTO - -o OUT --json`, returned once PHOTO is done and lnca is reading stdin,
    which holds the start of image."""
    proc = subprocess.Popen(argv("denoise", photo, "-", "-o", out, "-m", weights, "--json"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_line(proc, '{"input"')  # on stderr: stdout is the image's
    _feed(proc, image[:2 * PIPE_HOLDS])  # goes through only once lnca reads
    return proc


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    proc.stdin.write(data)
    proc.stdin.flush()


def _wait_for_line(proc: subprocess.Popen, start: str, timeout: float = 60) -> str:
    """Read stderr up to a line that begins with start, a byte at a time: nothing is read ahead into a
    buffer that select cannot see."""
    line = b""
    while not (line.endswith(b"\n") and line.decode().startswith(start)):
        line = b"" if line.endswith(b"\n") else line
        ready, _, _ = select.select([proc.stderr], [], [], timeout)
        if not ready:
            proc.kill()
            pytest.fail(f"lnca wrote no line starting {start!r} in time")
        byte = os.read(proc.stderr.fileno(), 1)
        if not byte:
            pytest.fail(f"lnca ended without a line starting {start!r}")
        line += byte
    return line.decode()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_stops_at_once_with_its_exit_code(tmp_path, tiny_weights, big_photo, signum):
    write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    proc = _start_reading_stdin(tmp_path / "a.png", out, tiny_weights, big_photo)
    proc.send_signal(signum)
    _feed(proc, big_photo[2 * PIPE_HOLDS:3 * PIPE_HOLDS])
    _wait_for_line(proc, f"interrupted by {signum.name}: stopping after the current file")
    proc.send_signal(signum)
    with contextlib.suppress(BrokenPipeError):  # lnca may have stopped already
        _feed(proc, big_photo[3 * PIPE_HOLDS:4 * PIPE_HOLDS])
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    assert_no_traceback(stderr)
    assert stderr.decode().rstrip().endswith("interrupted")
    assert os.listdir(out) == ["a_denoise.png"]
    assert_complete_images(out.iterdir())
    assert temp_files(tmp_path) == []


def test_sigterm_during_the_last_file_finishes_it_and_exits_143(tmp_path, tiny_weights, big_photo):
    write_photo(tmp_path / "a.png")
    proc = _start_reading_stdin(tmp_path / "a.png", tmp_path / "out", tiny_weights, big_photo)
    proc.send_signal(signal.SIGTERM)
    image, stderr = proc.communicate(big_photo[2 * PIPE_HOLDS:], timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted by SIGTERM: stopping after the current file" in stderr.decode()
    assert '"status": "done"' in stderr.decode()
    assert "stopped, interrupted by SIGTERM: every file had been started" in stderr.decode()
    assert image.startswith(b"\x89PNG")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_after_the_batch_and_saves_the_checkpoint(tmp_path, signum):
    import torch

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(4):
        write_photo(data / f"p{i}.png", size=(40, 36), seed=i)
    ckpt, log = tmp_path / "c.pt", tmp_path / "log.jsonl"
    proc = subprocess.Popen(argv("train", "--data", data, "--out", tmp_path / "m.safetensors", "--preset", "paper",
                                 "--crop", "16", "--batch", "2", "--ae-iterations", "100000", "--checkpoint", ckpt,
                                 "--log", log, "--device", "cpu"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(600):  # the first batch is logged: the handlers are in place
        if log.exists() and log.read_text().count("\n") >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(proc.stderr.read().decode())
        select.select([], [], [], 0.1)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    stderr = stderr.decode()

    assert proc.returncode == 128 + signum, stderr
    assert_no_traceback(stderr)
    assert f"stopped, interrupted by {signum.name}; resume with the same command" in stderr
    logged = [json.loads(line)["iteration"] for line in log.read_text().splitlines()]
    assert torch.load(ckpt, weights_only=False)["iteration"] == logged[-1]  # every batch done is kept
    assert temp_files(tmp_path) == []
