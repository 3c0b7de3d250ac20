"""Ctrl-C (SIGINT) and SIGTERM on a real `lnca` batch: it stops after the current file, leaves only
complete outputs, exits 128 + the signal, and a rerun without --overwrite finishes the rest."""
import json
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import lnca, write_photo

from .conftest import argv, assert_complete_images, assert_no_traceback, temp_files

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

FILES = 20
SLOW = ["--steps", "1000"]  # about 1 s a file with the tiny model: the batch is still running when signalled,
# and a second signal 20 ms after the first lands inside the same file, even on a busy machine


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


def test_a_second_ctrl_c_stops_at_once_leaving_only_complete_outputs(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    proc = _start(photos, out, tiny_weights)
    _wait_for_first_file(proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert_no_traceback(stderr)
    assert stderr.decode().rstrip().endswith("interrupted")
    assert 1 <= len(os.listdir(out)) < FILES
    assert_complete_images(out.iterdir())
    assert temp_files(tmp_path) == []
