"""Tests for lnca_cli.images: reading, writing and round-tripping image files."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, JpegImagePlugin

from lnca_cli import images
from lnca_cli.images import ImageError, encode_image, read_image, write_image

W, H = 17, 13
RNG = np.random.default_rng(1234)
ARTIST = 0x013B
MAKE = 0x010F
ORIENTATION = 0x0112


def random_bytes(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def palette_image(transparent: bool) -> Image.Image:
    image = Image.frombytes("P", (W, H), (random_bytes(H, W) % 16).tobytes())
    image.putpalette(random_bytes(16 * 3).tolist())
    if transparent:
        image.info["transparency"] = 3
    return image


def deep_gray(mode: str) -> Image.Image:
    values = RNG.integers(0, 65536, (H, W)).astype(">u2" if mode == "I;16B" else "<u2")
    return Image.frombytes(mode, (W, H), values.tobytes())


def save(image: Image.Image, path, fmt: str, **options):
    image.save(path, fmt, **options)
    return path


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_block(**tags: object) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[{"artist": ARTIST, "make": MAKE, "orientation": ORIENTATION}[tag]] = value
    return exif.tobytes()


def _gray_meta() -> images.ImageMeta:
    return images.ImageMeta("L", "PNG", 8, None, None, None, True)


# (source image, source format, Pillow mode it reads as, channels, alpha, bit depth)
SOURCES = {
    "L": (lambda: Image.fromarray(random_bytes(H, W)), "PNG", "L", 1, False, 8),
    "LA": (lambda: Image.fromarray(random_bytes(H, W, 2)), "PNG", "LA", 1, True, 8),
    "RGB": (lambda: Image.fromarray(random_bytes(H, W, 3)), "PNG", "RGB", 3, False, 8),
    "RGBA": (lambda: Image.fromarray(random_bytes(H, W, 4)), "PNG", "RGBA", 3, True, 8),
    "P": (lambda: palette_image(False), "PNG", "RGB", 3, False, 8),
    "P+transparency": (lambda: palette_image(True), "PNG", "RGBA", 3, True, 8),
    "CMYK JPEG": (
        lambda: Image.frombytes("CMYK", (W, H), random_bytes(H, W, 4).tobytes()),
        "JPEG", "RGB", 3, False, 8,
    ),
    "I;16 PNG": (lambda: deep_gray("I;16"), "PNG", "I;16", 1, False, 16),
    "I;16 TIFF": (lambda: deep_gray("I;16"), "TIFF", "I;16", 1, False, 16),
    "I;16B TIFF": (lambda: deep_gray("I;16B"), "TIFF", "I;16", 1, False, 16),
}


@pytest.mark.parametrize("out_format", ["PNG", "TIFF"])
@pytest.mark.parametrize("kind", SOURCES)
def test_lossless_round_trip(tmp_path, kind, out_format):
    make, src_format, read_mode, channels, has_alpha, depth = SOURCES[kind]
    source = make()
    source_path = save(source, tmp_path / f"in.{src_format.lower()}", src_format)

    pixels, meta = read_image(source_path)
    assert pixels.dtype == torch.float32 and pixels.shape == (channels, H, W)
    assert (meta.mode, meta.format, meta.bit_depth) == (source.mode, src_format, depth)
    assert meta.grayscale == (channels == 1)
    assert (meta.alpha is not None) == has_alpha

    reference = Image.open(source_path).convert(read_mode) if depth == 8 else source
    expected = np.asarray(reference).astype(np.float64) / (2**depth - 1)
    expected = expected.reshape(H, W, -1).transpose(2, 0, 1)
    assert np.array_equal(pixels.numpy(), expected[:channels].astype(np.float32))
    if has_alpha:
        assert np.array_equal(meta.alpha.numpy(), expected[channels:].astype(np.float32))

    out = tmp_path / f"out.{out_format.lower()}"
    write_image(out, pixels, meta)
    with Image.open(out) as written:
        assert written.mode == read_mode
    again, again_meta = read_image(out)
    assert torch.equal(again, pixels)
    assert again_meta.bit_depth == depth
    if has_alpha:
        assert torch.equal(again_meta.alpha, meta.alpha)


def test_alpha_rides_beside_changed_pixels(tmp_path):
    pixels, meta = read_image(save(Image.fromarray(random_bytes(H, W, 4)), tmp_path / "a.png", "PNG"))
    alpha = meta.alpha.clone()
    write_image(tmp_path / "b.png", 1 - pixels, meta)
    restored, restored_meta = read_image(tmp_path / "b.png")
    assert torch.equal(restored_meta.alpha, alpha)
    assert torch.allclose(restored, 1 - pixels, atol=0.5 / 255)


def test_jpeg_output_drops_alpha_and_sixteen_bits(tmp_path):
    _, meta = read_image(save(deep_gray("I;16"), tmp_path / "deep.png", "PNG"))
    meta.alpha = torch.rand(1, H, W)
    write_image(tmp_path / "out.jpg", torch.rand(1, H, W), meta)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.mode == "L"


def test_quantisation_rounds_and_clips():
    pixels = torch.tensor([[[-0.5, 127.49 / 255, 127.5 / 255, 2.0, float("nan")]]])
    with Image.open(io.BytesIO(encode_image(pixels, _gray_meta(), format="PNG"))) as image:
        assert np.asarray(image).ravel().tolist() == [0, 127, 128, 255, 0]


@pytest.mark.parametrize("out_format", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_survives(tmp_path, out_format):
    source = save(Image.fromarray(random_bytes(H, W, 3)), tmp_path / "in.jpg", "JPEG",
                  exif=exif_block(artist="Alice", make="Canon"))
    pixels, meta = read_image(source)
    out = tmp_path / f"out.{out_format.lower()}"
    write_image(out, pixels, meta)
    with Image.open(out) as written:
        exif = written.getexif()
        assert (exif[ARTIST], exif[MAKE]) == ("Alice", "Canon")


def test_orientation_applied_and_reset(tmp_path):
    source = Image.fromarray(random_bytes(H, W, 3))
    path = save(source, tmp_path / "in.png", "PNG", exif=exif_block(orientation=6, artist="Bob"))
    pixels, meta = read_image(path)
    upright = np.asarray(source.transpose(Image.Transpose.ROTATE_270))
    assert pixels.shape == (3, W, H)
    assert np.array_equal((pixels * 255).round().byte().permute(1, 2, 0).numpy(), upright)

    write_image(tmp_path / "out.jpg", pixels, meta)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.size == (H, W)
        assert written.getexif()[ORIENTATION] == 1
        assert written.getexif()[ARTIST] == "Bob"


def test_orientation_reset_little_endian_keeps_other_bytes():
    entries = [(ARTIST, 2, 4, b"Ann\x00"), (ORIENTATION, 3, 1, struct.pack("<HH", 8, 0))]
    block = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    block += b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    block += b"\x00\x00\x00\x00"
    reset = images._reset_orientation(block)
    assert reset.startswith(b"Exif\x00\x00")
    expected = bytearray(block)
    expected[8 + 2 + 12 + 8] = 1
    assert reset[6:] == bytes(expected)


@pytest.mark.parametrize("out_format", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_icc_profile_survives(tmp_path, out_format):
    profile = srgb_profile()
    source = save(Image.fromarray(random_bytes(H, W, 3)), tmp_path / "in.png", "PNG", icc_profile=profile)
    pixels, meta = read_image(source)
    assert meta.icc_profile == profile
    out = tmp_path / f"out.{out_format.lower()}"
    write_image(out, pixels, meta)
    with Image.open(out) as written:
        assert written.info["icc_profile"] == profile


def test_jpeg_quality_changes_size():
    pixels = torch.rand(3, 64, 64)
    meta = images.ImageMeta("RGB", "PNG", 8, None, None, None, False)
    small = encode_image(pixels, meta, format="JPEG", quality=30)
    large = encode_image(pixels, meta, format="JPEG", quality=95)
    assert len(small) < len(large)
    with Image.open(io.BytesIO(large)) as image:
        assert JpegImagePlugin.get_sampling(image) == 0  # 4:4:4 at high quality


def test_cmyk_profile_is_dropped_with_cmyk(tmp_path):
    cmyk = Image.frombytes("CMYK", (W, H), random_bytes(H, W, 4).tobytes())
    _, meta = read_image(save(cmyk, tmp_path / "in.jpg", "JPEG", icc_profile=srgb_profile()))
    assert meta.icc_profile is None


def test_encode_image_reads_back():
    source = Image.fromarray(random_bytes(H, W, 3))
    pixels, meta = read_image(save(source, io.BytesIO(), "PNG").getvalue())
    again, _ = read_image(encode_image(pixels, meta, format="png"))
    assert torch.equal(again, pixels)


def test_multi_frame_reads_first_frame(tmp_path):
    frames = [Image.new("RGB", (W, H), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    pixels, _ = read_image(tmp_path / "anim.gif")
    assert pixels[:, 0, 0].tolist() == [1.0, 0.0, 0.0]


def test_format_from_extension_and_override(tmp_path):
    pixels, meta = torch.rand(1, H, W), _gray_meta()
    write_image(tmp_path / "out.dat", pixels, meta, format="png")
    with Image.open(tmp_path / "out.dat") as written:
        assert written.format == "PNG"
    with pytest.raises(ImageError, match="out.xyz"):
        write_image(tmp_path / "out.xyz", pixels, meta)
    assert images.format_for_extension(".JPG") == "JPEG"
    assert images.format_for_extension(".tif") == "TIFF"
    with pytest.raises(ImageError):
        images.format_for_extension(".gif")
    assert ".webp" in images.SUPPORTED_EXTENSIONS


def test_written_file_gets_ordinary_permissions(tmp_path):
    write_image(tmp_path / "out.png", torch.rand(1, H, W), _gray_meta())
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "out.png").st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("existing", [True, False])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, existing):
    target = tmp_path / "out.png"
    if existing:
        target.write_bytes(b"old image")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(ImageError, match="out.png: cannot write image \\(No space left on device\\)"):
        write_image(target, torch.rand(1, H, W), _gray_meta())
    assert os.listdir(tmp_path) == (["out.png"] if existing else [])
    if existing:
        assert target.read_bytes() == b"old image"


def test_write_to_missing_folder_raises(tmp_path):
    with pytest.raises(ImageError, match="cannot write image"):
        write_image(tmp_path / "nope" / "out.png", torch.rand(1, H, W), _gray_meta())


def _truncated(fmt: str) -> bytes:
    data = save(Image.fromarray(random_bytes(64, 64, 3)), io.BytesIO(), fmt).getvalue()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "filename, content, reason",
    [
        ("empty.png", b"", "not a readable image"),
        ("text.jpg", b"hello, I am not a photo\n", "cannot identify image file"),
        ("cut.png", _truncated("PNG"), "not a readable image"),
        ("cut.jpg", _truncated("JPEG"), "truncated"),
    ],
)
def test_corrupt_files_raise_image_error(tmp_path, filename, content, reason):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_missing_file_and_bad_bytes(tmp_path):
    with pytest.raises(ImageError, match="missing.png: cannot read file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="^<stdin>: not a readable image"):
        read_image(b"\x89PNG broken")


@pytest.mark.parametrize("limit", [H * W - 1, H * W // 2 - 1])  # warning, then error
def test_decompression_bomb(tmp_path, monkeypatch, limit):
    path = save(Image.fromarray(random_bytes(H, W)), tmp_path / "big.png", "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageError, match="big.png: image is larger than Pillow's safety limit"):
        read_image(path)


def test_unsupported_mode(tmp_path):
    path = save(Image.new("F", (W, H)), tmp_path / "float.tif", "TIFF")
    with pytest.raises(ImageError, match="float.tif: unsupported image mode F"):
        read_image(path)


@pytest.mark.parametrize("out_format", ["JPEG", "PNG", "TIFF", "WEBP", "BMP"])
@pytest.mark.parametrize("kind", SOURCES)
def test_every_mode_writes_to_every_format(tmp_path, kind, out_format):
    make, src_format, *_ = SOURCES[kind]
    pixels, meta = read_image(save(make(), tmp_path / "in", src_format))
    again, again_meta = read_image(encode_image(pixels, meta, format=out_format))
    assert again.shape[1:] == (H, W)
    assert again_meta.format == out_format


@pytest.mark.parametrize("source_quality, written", [(80, 95), (98, 98)])
def test_a_jpeg_is_written_at_95_or_at_its_own_quality_when_higher(tmp_path, source_quality, written):
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.jpg", quality=source_quality)
    restored, meta = images.read_image(tmp_path / "in.jpg")
    assert meta.jpeg_quality == source_quality
    images.write_image(tmp_path / "out.jpg", restored, meta)
    assert images.read_image(tmp_path / "out.jpg")[1].jpeg_quality == written
    images.write_image(tmp_path / "asked.jpg", restored, meta, quality=70)  # --quality wins
    assert images.read_image(tmp_path / "asked.jpg")[1].jpeg_quality == 70
