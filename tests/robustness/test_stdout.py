"""An image to stdout is written whole or reported failed: past short writes, to a reader that
closes the pipe, and when SIGTERM comes mid-stream. Real processes, real pipes, real signals; the
image (about 0.8 MB as PNG) is much larger than a pipe holds (64 kB), so lnca is still writing when
the test acts, whatever the machine's speed."""
import fcntl
import json
import os
import select
import signal
import subprocess

import pytest
from PIL import Image

from conftest import write_photo

from .conftest import argv, assert_no_traceback

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX pipes and signals")

UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}  # stdout is then a raw file: one write() may be short


@pytest.fixture
def big_photo(tmp_path):
    path = tmp_path / "big.png"
    write_photo(path, size=(512, 512))  # noise: its restored PNG is about 0.8 MB
    return path


def _record(stderr: bytes) -> dict:
    """The --json line (on stderr, since the image is on stdout)."""
    (line,) = [line for line in stderr.decode().splitlines() if line.startswith("{")]
    return json.loads(line)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_short_writes_to_a_non_blocking_pipe_still_give_the_whole_image(big_photo, tiny_weights, tmp_path):
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, fcntl.fcntl(write_end, fcntl.F_GETFL) | os.O_NONBLOCK)
    with open(big_photo, "rb") as stdin:
        proc = subprocess.Popen(argv("denoise", "-", "-m", tiny_weights, "--json"), stdin=stdin, stdout=write_end,
                                stderr=subprocess.PIPE, env=UNBUFFERED)
    os.close(write_end)
    data = _read_all(read_end)
    os.close(read_end)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, stderr
    assert _record(stderr)["status"] == "done"
    (tmp_path / "out.png").write_bytes(data)
    with Image.open(tmp_path / "out.png") as image:
        image.load()  # whole: a cut PNG fails here
        assert image.size == (512, 512)


def test_a_reader_that_closes_the_pipe_fails_the_file(big_photo, tiny_weights):
    """As `lnca denoise - < big.png | head -c 10` does."""
    with open(big_photo, "rb") as stdin:
        proc = subprocess.Popen(argv("denoise", "-", "-m", tiny_weights, "--json"), stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=UNBUFFERED)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 1, stderr
    record = _record(stderr)
    assert record["status"] == "failed" and "the reader closed the pipe" in record["error"]
    assert_no_traceback(stderr)
    assert b"Exception ignored" not in stderr


def test_sigterm_mid_stream_fails_the_file_and_exits_143(big_photo, tiny_weights):
    with open(big_photo, "rb") as stdin:
        proc = subprocess.Popen(argv("denoise", "-", "-m", tiny_weights, "--json"), stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=UNBUFFERED)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    assert ready, "lnca wrote nothing in time"
    proc.send_signal(signal.SIGTERM)  # the pipe is full and unread: lnca is inside its write
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    record = _record(stderr)
    assert record["status"] == "failed" and "incomplete" in record["error"]
    assert "interrupted by SIGTERM" in stderr.decode()
    assert_no_traceback(stderr)
