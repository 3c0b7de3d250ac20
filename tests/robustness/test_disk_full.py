"""Write errors: reported in one line, the temporary file removed, the output never partial.

A file too large to write (EFBIG, here from a file-size limit on a real process) fails that file and
the batch goes on. A full disk (ENOSPC) or quota stops the batch before the next file, since every
later file would fail too: the rest are listed as not started and a rerun goes on from there.
"""
import errno
import os
import resource
import signal
import subprocess

import pytest
from PIL import Image

from conftest import lnca, write_photo

from .conftest import argv, assert_complete_images, assert_no_traceback, failure_lines, run_lnca, temp_files

LIMIT = 32 * 1024  # bytes a file may have: the small photos' outputs fit (2 kB), the large one's (60 kB) does not


def _file_size_limit():
    """In the child: writes past LIMIT fail with EFBIG (SIGXFSZ ignored, as Python does anyway)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="POSIX file-size limits")
@pytest.mark.parametrize("ext", ["png", "tif"])  # libtiff writes TIFFs itself: its errors must keep their errno too
def test_file_too_large_to_write_fails_alone_and_leaves_no_temporary_file(tmp_path, tiny_weights, ext):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / f"a.{ext}")
    write_photo(photos / f"m.{ext}", size=(256, 256))  # noise: its output is about 60 kB (PNG), 200 kB (TIFF)
    write_photo(photos / f"z.{ext}", seed=1)
    out = tmp_path / "out"
    proc = run_lnca("denoise", photos, "-o", out, "-m", tiny_weights, preexec_fn=_file_size_limit)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    (line,) = failure_lines(stderr, f"m_denoise.{ext}")
    assert "cannot write image (File too large)" in line
    assert "stopped" not in stderr  # the batch went on
    assert [line for line in stderr.splitlines() if "TIFF" in line] == []  # none of libtiff's own lines
    assert sorted(os.listdir(out)) == [f"a_denoise.{ext}", f"z_denoise.{ext}"]
    assert_complete_images(out.iterdir())
    assert temp_files(tmp_path) == []
    assert_no_traceback(proc.stdout, proc.stderr)


def test_full_disk_stops_the_batch_and_a_rerun_goes_on(tmp_path, tiny_weights, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        write_photo(photos / name)
    save, saved = Image.Image.save, []

    def disk_full_at_b(self, fp, *args, **kwargs):
        saved.append(fp)
        if len(saved) == 2:  # b's output, into its temporary file
            fp.write(b"the start of an image")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full_at_b)
    out = tmp_path / "out"
    result = lnca("denoise", photos, "-o", out, "-m", tiny_weights)
    assert result.exit_code == 1
    (line,) = failure_lines(result.stderr, "b_denoise.png")
    assert "No space left on device" in line
    assert result.stderr.rstrip().splitlines()[-1] == (
        "error: stopped, the disk is full: 2 of 4 files not started; run the same command again to go on "
        "(finished outputs are skipped)")
    assert os.listdir(out) == ["a_denoise.png"]
    assert temp_files(tmp_path) == []

    monkeypatch.setattr(Image.Image, "save", save)  # space was freed
    result = lnca("denoise", photos, "-o", out, "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert "1 skipped" in result.stderr and "3 done" in result.stderr
    assert_complete_images(out.iterdir())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_on_stdout_is_one_line(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    with open(tmp_path / "a.png", "rb") as stdin, open("/dev/full", "wb") as stdout:
        proc = subprocess.run(argv("denoise", "-", "-m", tiny_weights), stdin=stdin, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    (line,) = failure_lines(stderr, "No space left on device")
    assert_no_traceback(stderr)
    assert "Exception ignored" not in stderr
