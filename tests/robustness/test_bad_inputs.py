"""Bad inputs: each fails in one line naming the file, the batch goes on, and the exit status is 1.

Every case is one bad file in a folder between two good ones: the good ones must be restored, the
bad one reported once (plus once in the end summary), nothing partial written, no traceback.
(Missing files and an output equal to an input are in tests/test_cli.py.)
"""
import errno
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import lnca_cli.api as api
import lnca_cli.images as images
from conftest import lnca, write_photo
from lnca_cli.cli import app

from .conftest import assert_complete_images, assert_no_traceback, failure_lines, is_root, run_lnca, temp_files


def _image_bytes(fmt: str, size=(64, 48), **options) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _zero_width_png() -> bytes:
    header = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)  # width 0, height 5, 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b""))
            + _png_chunk(b"IEND", b""))


# name of the bad file, its bytes, what its error line says
BAD_FILES = {
    "empty": ("empty.jpg", lambda: b"", "not a readable image"),
    "truncated JPEG": ("cut.jpg", lambda: _image_bytes("JPEG")[:600], "truncated"),
    "truncated PNG": ("cut.png", lambda: _image_bytes("PNG")[:400], "not a readable image"),
    "text named .jpg": ("notes.jpg", lambda: b"shopping list: eggs, milk\n", "cannot identify image file"),
    "unsupported format (an icon named .png)": ("icon.png", lambda: _image_bytes("ICO", (32, 32)),
                                                "unsupported image format ICO"),
    "zero-sized PNG": ("zero.png", _zero_width_png, "not a readable image"),
}


def _batch(tmp_path, name: str, content: bytes):
    """photos/{a.png, <bad file>, z.jpg}"""
    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / "a.png")
    write_photo(photos / "z.jpg", seed=1)
    (photos / name).write_bytes(content)
    return photos


def _assert_batch_went_on(result, out, bad_name: str, says: str) -> None:
    """Exit 1; the bad file named in one `failed` line (and the summary); both good files restored."""
    assert result.exit_code == 1, result.stderr
    (line,) = failure_lines(result.stderr, bad_name)
    assert says.lower() in line.lower()
    summary = result.stderr.split("failed files:\n", 1)[1].splitlines()
    assert len(summary) == 1 and bad_name in summary[0]
    assert sorted(os.listdir(out)) == ["a_denoise.png", "z_denoise.jpg"]
    assert_complete_images(out.iterdir())
    assert_no_traceback(result.stdout, result.stderr)


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_fails_alone_and_the_batch_goes_on(tmp_path, tiny_weights, case):
    name, content, says = BAD_FILES[case]
    photos = _batch(tmp_path, name, content())
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    _assert_batch_went_on(result, tmp_path / "out", name, says)


def test_decompression_bomb_is_refused_saying_how_to_allow_it(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60 * 60)  # the good files are 24 x 20
    photos = _batch(tmp_path, "huge.png", _image_bytes("PNG", (64, 64)))
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    _assert_batch_went_on(result, tmp_path / "out", "huge.png", "decompression bombs")
    assert "--max-pixels 4096" in result.stderr
    for allow in ("4096", "0"):
        result = lnca("denoise", photos / "huge.png", "-m", tiny_weights, "-o", tmp_path / f"{allow}.png",
                      "--max-pixels", allow)
        assert result.exit_code == 0, result.stderr
    assert Image.MAX_IMAGE_PIXELS == 60 * 60  # Pillow's own limit is left as it was


def test_image_too_large_for_memory_is_refused_before_decoding(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setattr(images, "_available_memory", lambda: 100_000)  # enough for 24 x 20, not 64 x 64
    photos = _batch(tmp_path, "huge.png", _image_bytes("PNG", (64, 64)))
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    _assert_batch_went_on(result, tmp_path / "out", "huge.png", "64x64 image needs about")


def test_running_out_of_memory_while_restoring_fails_that_file_only(tmp_path, tiny_weights, monkeypatch):
    restore_tensor = api.restore_tensor

    def out_of_memory_on_huge(pixels, *args, **kwargs):
        if pixels.shape[-1] == 64:
            raise MemoryError()
        return restore_tensor(pixels, *args, **kwargs)

    monkeypatch.setattr(api, "restore_tensor", out_of_memory_on_huge)
    photos = _batch(tmp_path, "huge.png", _image_bytes("PNG", (64, 64)))
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    _assert_batch_went_on(result, tmp_path / "out", "huge.png", "not enough memory")


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1)])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_one_pixel_wide_images_are_restored(tmp_path, tiny_weights, size, mode):
    write_photo(tmp_path / "tiny.png", size=size, mode=mode)
    result = lnca("denoise", tmp_path / "tiny.png", "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "tiny_denoise.png") as image:
        assert image.size == size and image.mode == mode


def _frames(path, fmt: str, colours) -> None:
    frames = [Image.new("RGB", (24, 20), colour) for colour in colours]
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:])


def test_animated_gif_gives_its_first_frame_as_png(tmp_path, tiny_weights):
    """lnca cannot write GIF: a GIF's output is PNG unless --ext says otherwise; -o x.gif is refused."""
    _frames(tmp_path / "anim.gif", "GIF", [(255, 0, 0), (0, 0, 255), (0, 255, 0)])
    result = lnca("denoise", tmp_path / "anim.gif", "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "anim_denoise.png") as image:
        assert image.size == (24, 20) and getattr(image, "n_frames", 1) == 1
    assert lnca("denoise", tmp_path / "anim.gif", "-m", tiny_weights, "--ext", "webp").exit_code == 0
    assert (tmp_path / "anim_denoise.webp").is_file()
    result = lnca("denoise", tmp_path / "anim.gif", "-m", tiny_weights, "-o", tmp_path / "out.gif")
    assert result.exit_code == 1
    (line,) = failure_lines(result.stderr, "out.gif")
    assert "cannot write .gif" in line and "--ext" in line
    piped = CliRunner().invoke(app, ["denoise", "-", "-m", tiny_weights], input=(tmp_path / "anim.gif").read_bytes())
    assert piped.exit_code == 0 and piped.stdout_bytes.startswith(b"\x89PNG")  # to stdout: PNG


def test_multi_page_tiff_gives_its_first_page(tmp_path, tiny_weights, monkeypatch):
    _frames(tmp_path / "pages.tif", "TIFF", [(255, 0, 0), (0, 0, 255)])
    seen = []
    restore_tensor = api.restore_tensor
    monkeypatch.setattr(api, "restore_tensor", lambda pixels, *a, **k: seen.append(pixels) or restore_tensor(
        pixels, *a, **k))
    result = lnca("denoise", tmp_path / "pages.tif", "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert seen[0][:, 0, 0].tolist() == [1.0, 0.0, 0.0]  # the red first page went through the model
    with Image.open(tmp_path / "pages_denoise.tif") as image:
        assert image.size == (24, 20) and image.n_frames == 1


def test_unreadable_file_fails_alone(tmp_path, tiny_weights, monkeypatch):
    """As root nothing is unreadable, so the file system's answer is simulated at Pillow's open."""
    opened = Image.open

    def refuse_locked(fp, *args, **kwargs):
        if os.fspath(fp).endswith("locked.jpg"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(fp))
        return opened(fp, *args, **kwargs)

    photos = _batch(tmp_path, "locked.jpg", _image_bytes("JPEG"))
    monkeypatch.setattr(Image, "open", refuse_locked)
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    _assert_batch_went_on(result, tmp_path / "out", "locked.jpg", "cannot read file (Permission denied)")


@pytest.mark.skipif(is_root() or os.name != "posix", reason="root reads any file; needs POSIX permissions")
def test_file_without_read_permission_fails_alone(tmp_path, tiny_weights):
    photos = _batch(tmp_path, "locked.jpg", _image_bytes("JPEG"))
    (photos / "locked.jpg").chmod(0)
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    _assert_batch_went_on(result, tmp_path / "out", "locked.jpg", "Permission denied")


def test_output_folder_that_cannot_be_created_fails_each_file_before_any_work(tmp_path, tiny_weights, monkeypatch):
    photos = _batch(tmp_path, "b.png", _image_bytes("PNG"))
    (tmp_path / "taken").write_text("a file where the output folder should be")
    monkeypatch.setattr(api, "restore_tensor", lambda *a, **k: pytest.fail("restored an image it cannot write"))
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "taken" / "out")
    assert result.exit_code == 1
    lines = failure_lines(result.stderr, "cannot create the output folder")
    assert len(lines) == 3 and all(str(tmp_path / "taken" / "out") in line for line in lines)
    assert (tmp_path / "taken").read_text() == "a file where the output folder should be"


@pytest.mark.skipif(is_root() or os.name != "posix", reason="root writes anywhere; needs POSIX permissions")
def test_read_only_output_folder_fails_each_file_before_any_work(tmp_path, tiny_weights, monkeypatch):
    photos = _batch(tmp_path, "b.png", _image_bytes("PNG"))
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    monkeypatch.setattr(api, "restore_tensor", lambda *a, **k: pytest.fail("restored an image it cannot write"))
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", out)
    assert result.exit_code == 1
    assert len(failure_lines(result.stderr, "output folder is not writable")) == 3
    assert not any(out.iterdir())


def test_symlink_loops_under_recursive_neither_hang_nor_fail(tmp_path, tiny_weights):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    write_photo(photos / "a.png")
    write_photo(photos / "sub" / "b.png", seed=1)
    (photos / "sub" / "up").symlink_to(photos, target_is_directory=True)  # photos/sub/up -> photos: a loop
    (photos / "self.jpg").symlink_to(photos / "self.jpg")  # a link to itself
    (photos / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a dangling link
    result = lnca("denoise", photos, "-r", "-m", tiny_weights, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png")) == [
        "a_denoise.png", "sub/b_denoise.png"]


def test_a_symlink_loop_named_as_input_fails_alone(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    result = lnca("denoise", tmp_path / "a.png", tmp_path / "self.jpg", "-m", tiny_weights)
    assert result.exit_code == 1
    (line,) = failure_lines(result.stderr, "self.jpg")
    assert "symbolic links" in line
    assert (tmp_path / "a_denoise.png").is_file()


@pytest.mark.skipif(os.name != "posix", reason="file names are bytes on POSIX only")
def test_file_names_that_are_not_utf8(tmp_path, tiny_weights):
    """Latin-1 names from an old camera or archive: restored, named in messages and in valid JSON lines."""
    folder = os.fsencode(tmp_path / "photos")
    os.mkdir(folder)
    write_photo(os.path.join(folder, b"caf\xe9.png"))
    with open(os.path.join(folder, b"d\xe9j\xe0 vu.jpg"), "wb") as bad:
        bad.write(b"not a jpeg")
    proc = run_lnca("denoise", folder, "-m", tiny_weights, env={**os.environ, "LC_ALL": "C"})  # a real stderr
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc.stdout, proc.stderr)
    assert sorted(os.listdir(folder)) == [b"caf\xe9.png", b"caf\xe9_denoise.png", b"d\xe9j\xe0 vu.jpg"]
    assert len(failure_lines(proc.stderr.decode(), "vu.jpg: not a readable image")) == 1
    result = lnca("denoise", os.fsdecode(folder), "-m", tiny_weights, "--json", "--overwrite")
    records = {os.path.basename(os.fsencode(r["input"])): r for r in map(json.loads, result.stdout.splitlines())}
    assert records[b"caf\xe9.png"]["status"] == "done"
    assert records[b"d\xe9j\xe0 vu.jpg"]["status"] == "failed" and "vu.jpg" in records[b"d\xe9j\xe0 vu.jpg"]["error"]


def test_a_name_near_the_length_limit_still_gets_its_output(tmp_path, tiny_weights):
    """A 236-byte name gives a legal 244-byte output name; its temporary name must stay within 255 too."""
    name = "p" * 232 + ".png"
    write_photo(tmp_path / name)
    result = lnca("denoise", tmp_path / name, "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert_complete_images([tmp_path / ("p" * 232 + "_denoise.png")])
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file locks")
def test_stale_temporary_files_of_killed_runs_are_removed_but_not_live_ones(tmp_path, tiny_weights):
    import fcntl

    write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a_denoise.png.k1ll3d_x.lnca.tmp"  # a run killed while writing left it
    live = out / ".b_denoise.png.wr1t1ng_.lnca.tmp"  # another lnca is writing it now: it holds the lock
    others = [out / ".notes.tmp", out / "a.lnca.tmp"]  # not lnca's pattern
    for path in (stale, live, *others):
        path.write_bytes(b"part of an image")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = lnca("denoise", tmp_path / "a.png", "-m", tiny_weights, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert not stale.exists()
    assert live.exists() and all(path.exists() for path in others)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_an_image_neither_hangs_nor_is_read(tmp_path, tiny_weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / "a.png")
    os.mkfifo(photos / "x.png")
    proc = run_lnca("denoise", photos / "x.png", photos / "a.png", "-m", tiny_weights, "-o", tmp_path / "out",
                    timeout=60)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    (line,) = failure_lines(stderr, "x.png")
    assert "not a regular file" in line
    assert os.listdir(tmp_path / "out") == ["a_denoise.png"]
    in_folder = run_lnca("denoise", photos, "-r", "-m", tiny_weights, "-o", tmp_path / "out2", timeout=60)
    assert in_folder.returncode == 0, in_folder.stderr
    assert os.listdir(tmp_path / "out2") == ["a_denoise.png"]


@pytest.mark.skipif(os.name != "posix", reason="newlines in file names")
def test_names_with_newlines_and_control_characters_are_shown_escaped(tmp_path, tiny_weights):
    photos = _batch(tmp_path, "bad\nname\x1b[31m.png", b"not a png")
    write_photo(photos / "good\nname.png")
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    assert result.exit_code == 1
    (line,) = failure_lines(result.stderr, "bad\\nname\\x1b[31m.png")
    assert line.endswith("bad\\nname\\x1b[31m.png: not a readable image (cannot identify image file)")
    assert "good\\nname.png -> " in result.stderr and "\x1b" not in result.stderr
    as_json = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out", "--json")
    records = {r["input"]: r for r in map(json.loads, as_json.stdout.splitlines())}
    assert "bad\\nname\\x1b[31m.png: not a readable image" in records[str(photos / "bad\nname\x1b[31m.png")]["error"]


def test_a_path_that_does_not_exist_says_so_once(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    result = lnca("denoise", tmp_path / "holidays", tmp_path / "a.png", "-m", tiny_weights)
    assert result.exit_code == 1
    (line,) = failure_lines(result.stderr, "holidays")
    assert line.split(None, 1)[1] == f"{tmp_path / 'holidays'}: no such file or folder"
    assert (tmp_path / "a_denoise.png").is_file()


def test_a_write_failure_names_the_input_once_and_the_output_once(tmp_path, tiny_weights):
    photos = _batch(tmp_path, "b.png", _image_bytes("PNG"))
    (tmp_path / "taken").write_text("a file where the output folder should be")
    result = lnca("denoise", photos / "b.png", "-m", tiny_weights, "-o", tmp_path / "taken" / "out")
    (line,) = failure_lines(result.stderr, "cannot create the output folder")
    assert line.split(None, 1)[1].startswith(f"{photos / 'b.png'}: {tmp_path / 'taken' / 'out'}: cannot create")
    assert line.count(str(photos / "b.png")) == 1


def test_the_allocators_own_words_become_one_plain_line(tmp_path, tiny_weights, monkeypatch):
    restore_tensor = api.restore_tensor

    def allocation_fails_on_huge(pixels, *args, **kwargs):
        if pixels.shape[-1] == 64:  # what torch's CPU allocator raises when the memory is not there
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                               "you tried to allocate 92160000000 bytes.")
        return restore_tensor(pixels, *args, **kwargs)

    monkeypatch.setattr(api, "restore_tensor", allocation_fails_on_huge)
    photos = _batch(tmp_path, "huge.png", _image_bytes("PNG", (64, 64)))
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    _assert_batch_went_on(result, tmp_path / "out", "huge.png", "not enough memory to restore this image")
    assert "enforce fail" not in result.stderr and "alloc_cpu" not in result.stderr


def test_gifs_in_a_folder_are_restored_as_png(tmp_path, tiny_weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / "a.png")
    Image.new("RGB", (24, 20), (200, 30, 30)).save(photos / "g.gif")
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a_denoise.png", "g_denoise.png"]
