"""Reading and writing image files: the only module that touches them.

A restore goes path -> read_image (float pixels + ImageMeta) -> model ->
write_image. The alpha channel and the metadata ride beside the pixels in
ImageMeta and never go through the model.

Pillow 13 reads 16-bit colour PNG and TIFF files as 8-bit RGB(A), keeping the
high byte, so 16 bits survive a restore only for grayscale images; colour
images are always read and written at 8 bits.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from lnca_cli.errors import first_line, printable
from lnca_cli.files import atomic_write


class ImageError(Exception):
    """A file that cannot be read or written as an image.

    The message is one line naming the file and the reason.
    """


@dataclass
class ImageMeta:
    """Everything about an image that is not its colour pixels."""

    mode: str  # original Pillow mode, e.g. "RGB", "P", "CMYK", "I;16"
    format: str | None  # Pillow format of the source, e.g. "JPEG"
    bit_depth: int  # 8 or 16
    alpha: torch.Tensor | None  # (1, H, W) float32 in [0, 1], passed through untouched
    exif: bytes | None  # with the Orientation tag reset to 1: pixels are already rotated
    icc_profile: bytes | None
    grayscale: bool  # colour content is single-channel (L, LA, I;16 ...)
    jpeg_quality: int | None = None  # a JPEG source's quality, estimated from its quantisation tables


_EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
SUPPORTED_EXTENSIONS = frozenset(_EXTENSION_FORMATS)  # the formats lnca writes
READ_EXTENSIONS = SUPPORTED_EXTENSIONS | {".gif"}  # the files lnca takes from a folder
WRITE_FORMATS = frozenset(_EXTENSION_FORMATS.values())
# What read_image accepts, by content: the writable formats, GIF (first frame) and MPO (JPEG from cameras).
READ_FORMATS = WRITE_FORMATS | {"GIF", "MPO"}
# The mark lnca writes into its outputs (an XMP packet: the inputs' XMP is not carried over), by which it
# tells its own earlier outputs from a user's files of the same name. BMP cannot hold it.
OUTPUT_MARK = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-'
               b'ns#"><rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="lnca"/>'
               b'</rdf:RDF></x:xmpmeta>')
# Rough peak memory of a restore per pixel: the decoded image, float input and output, quantised copies.
BYTES_PER_PIXEL = 48


@dataclass(frozen=True)
class _Format:
    """What an output format can hold."""

    alpha: bool
    deep: bool  # 16-bit grayscale
    metadata: bool  # EXIF and ICC profile


_FORMATS = {
    "JPEG": _Format(alpha=False, deep=False, metadata=True),
    "PNG": _Format(alpha=True, deep=True, metadata=True),
    "TIFF": _Format(alpha=True, deep=True, metadata=True),
    "WEBP": _Format(alpha=True, deep=False, metadata=True),
    # Pillow writes a BMP alpha channel but reads it back as plain RGB.
    "BMP": _Format(alpha=False, deep=False, metadata=False),
}

_DEEP_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_GRAY_MODES = frozenset({"1", "L", "LA"})
_COLOUR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112


def format_for_extension(ext: str) -> str:
    """Pillow format name for a file extension: ".jpg" -> "JPEG"."""
    key = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if key not in _EXTENSION_FORMATS:
        raise ImageError(f"{ext}: unsupported image file extension")
    return _EXTENSION_FORMATS[key]


def read_image(source: str | os.PathLike | bytes, max_pixels: int | None = None) -> tuple[torch.Tensor, ImageMeta]:
    """Pixels as float32 (C, H, W) in [0, 1], C = 1 for grayscale, 3 for colour.

    The EXIF orientation is applied to the pixels. Palette images become RGB
    (RGBA with transparency), CMYK becomes RGB. Of a multi-frame image
    (animated GIF, multi-page TIFF) only the first frame is read. EXIF comes
    from JPEG, PNG and WebP files; the tags of a TIFF source are not kept.
    Images over max_pixels (default: Pillow's decompression-bomb limit, 0: no
    limit) or too large for the free memory are refused before decoding.
    """
    name = "<stdin>" if isinstance(source, (bytes, bytearray)) else printable(os.fspath(source))
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    image, source_format, exif, icc_profile, quality = _load(source, name, limit)
    mode = image.mode
    image = _normalise_mode(image, name)
    deep = image.mode in _DEEP_GRAY_MODES
    grayscale = deep or image.mode in ("L", "LA")
    pixels, alpha = _to_tensors(image, channels=1 if grayscale else 3, deep=deep)
    meta = ImageMeta(
        mode=mode,
        format=source_format,
        bit_depth=16 if deep else 8,
        alpha=alpha,
        exif=_reset_orientation(exif) if exif else None,
        # A CMYK profile no longer describes the pixels once they are RGB.
        icc_profile=None if mode == "CMYK" else icc_profile,
        grayscale=grayscale,
        jpeg_quality=quality,
    )
    return pixels, meta


#: The JPEG standard's luminance quantisation table (Annex K), which libjpeg scales by quality.
_JPEG_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                   14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                   49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


def _libjpeg_table_sum(quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sum(min(max((value * scale + 50) // 100, 1), 255) for value in _JPEG_LUMINANCE)


def jpeg_quality(quantization: dict | None) -> int | None:
    """The libjpeg quality (1-100) whose luminance table is closest to a JPEG's first table (by the
    sum of its entries, which does not depend on their order); None without tables."""
    if not quantization or 0 not in quantization:
        return None
    total = sum(quantization[0])
    return min(range(1, 101), key=lambda quality: (abs(_libjpeg_table_sum(quality) - total), -quality))


DEFAULT_QUALITY = 95


def output_quality(requested: int | None, meta: ImageMeta) -> int:
    """The JPEG/WebP quality to write: the one asked for, else 95, or a JPEG source's own when higher."""
    if requested is not None:
        return requested
    return max(DEFAULT_QUALITY, meta.jpeg_quality or 0)


def _load(source, name: str, max_pixels: int | None):
    """Open, check, fully decode and upright the image; Pillow errors become ImageError."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        if not isinstance(source, io.BytesIO) and not stat.S_ISREG(os.stat(source).st_mode):
            raise ImageError(f"{name}: not a regular file (a folder, FIFO or device); lnca reads image files only")
        with _open(source) as opened, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on damaged metadata: the pixels decode or fail
            _check_header(opened, name, max_pixels)
            opened.load()  # decode now, so a truncated file fails here
            upright = ImageOps.exif_transpose(opened)
            info = opened.info
            quality = jpeg_quality(opened.quantization) if opened.format == "JPEG" else None
            return upright, opened.format, info.get("exif"), info.get("icc_profile"), quality
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageError(f"{name}: not enough memory to decode this image") from exc
    except Exception as exc:  # Pillow decoders raise many exception types on bad data
        file_system = isinstance(exc, OSError) and exc.errno is not None
        problem = "cannot read file" if file_system else "not a readable image"
        raise ImageError(f"{name}: {problem} ({_reason(exc)})") from exc


_PIXEL_LIMIT_LOCK = threading.Lock()


def _open(source) -> Image.Image:
    """Image.open (headers only) without Pillow's decompression-bomb check: _check_header does it, with a
    clear message and the caller's limit."""
    with _PIXEL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a bomb is checked next; other warnings are notes on damaged metadata
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def as_rgb(pixels: torch.Tensor) -> torch.Tensor:
    """Colour pixels (3, H, W) of pixels as read (C = 1 or 3): grayscale repeated on three channels
    (a view, no copy). The model sees colour."""
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels


def find_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files in a folder (and below, if recursive), sorted: regular files whose extension lnca
    reads (READ_EXTENSIONS), so a FIFO or device named like an image is left alone; symlink loops
    are not followed."""
    pattern = Path(folder).rglob("*") if recursive else Path(folder).glob("*")
    return sorted(p for p in pattern if p.suffix.lower() in READ_EXTENSIONS and p.is_file())


def written_by_lnca(path: str | os.PathLike) -> bool:
    """Whether the file is an image that carries lnca's mark (OUTPUT_MARK): an earlier output of lnca."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with _open(os.fspath(path)) as image:
            return image.info.get("xmp") == OUTPUT_MARK
    except Exception:  # noqa: BLE001 - whatever cannot be read is no output of lnca's
        return False


def _check_header(image: Image.Image, name: str, max_pixels: int | None) -> None:
    """Refuse, before decoding, a format lnca does not read, an image over the decompression-bomb
    limit (max_pixels; None or 0: none) or one that cannot fit in memory. (Pillow itself refuses
    images of zero width or height.)"""
    width, height = image.size
    if image.format not in READ_FORMATS:
        raise ImageError(f"{name}: unsupported image format {image.format}; lnca reads JPEG, PNG, TIFF, WebP, BMP "
                         f"and GIF")
    if max_pixels and width * height > max_pixels:
        raise ImageError(f"{name}: image is larger than Pillow's safety limit against decompression bombs "
                         f"({width}x{height} = {width * height:,} pixels, limit {max_pixels:,}); if you trust "
                         f"the file, allow it with --max-pixels {width * height} (or 0 for no limit)")
    needed, available = width * height * BYTES_PER_PIXEL, _available_memory()
    if available is not None and needed > available:
        raise ImageError(f"{name}: a {width}x{height} image needs about {needed / 1e9:.1f} GB of memory, but only "
                         f"{available / 1e9:.1f} GB are free (tiling bounds the model's memory, not the image's)")


def _available_memory() -> int | None:
    """Bytes of memory free for new allocations (RAM and swap, Linux), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return sum(int(fields[key].split()[0]) * 1024 for key in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError):
        return None


def _normalise_mode(image: Image.Image, name: str) -> Image.Image:
    """Convert to L, LA, RGB or RGBA, leaving 16-bit grayscale as it is."""
    if image.mode in _DEEP_GRAY_MODES:
        return image
    transparent = image.has_transparency_data
    if image.mode in _GRAY_MODES:
        return image.convert("LA" if transparent else "L")
    if image.mode in _COLOUR_MODES:
        return image.convert("RGBA" if transparent else "RGB")
    raise ImageError(f"{name}: unsupported image mode {image.mode}")


def _to_tensors(image: Image.Image, channels: int, deep: bool):
    """Split into (colour pixels, alpha or None), both float32 (C, H, W).

    One float copy of the image is made, straight from its 8- or 16-bit values: a 50 MP photograph
    takes 0.6 GB as float, and each extra full-size temporary would add as much again.
    """
    array = np.array(image)  # a writable copy of the 8- or 16-bit values
    if array.ndim == 2:
        array = array[:, :, None]
    if deep:  # 16-bit grayscale, in either byte order, or mode "I" (32-bit integers) treated as 16-bit
        array = np.clip(array.astype(np.int32), 0, 65535)
    planes = torch.empty(array.shape[2], *array.shape[:2], dtype=torch.float32)
    planes.copy_(torch.from_numpy(array).permute(2, 0, 1)).div_(65535 if deep else 255)
    if planes.shape[0] == channels:
        return planes, None
    return planes[:channels].clone(), planes[channels:].clone()


def _reset_orientation(exif: bytes) -> bytes:
    """Return the EXIF block with Orientation set to 1, every other byte unchanged.

    Patching in place rather than re-serialising through PIL.Image.Exif keeps
    maker notes, whose internal offsets break when the block is laid out anew.
    The result always starts with the "Exif\\0\\0" header, which is what
    Pillow's savers expect.
    """
    tiff = bytearray(exif.removeprefix(_EXIF_HEADER))
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    try:
        if order is not None:
            (ifd,) = struct.unpack_from(order + "I", tiff, 4)
            (count,) = struct.unpack_from(order + "H", tiff, ifd)
            for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
                tag, kind = struct.unpack_from(order + "HH", tiff, entry)
                if tag == _ORIENTATION_TAG and kind == 3:  # 3 = SHORT
                    struct.pack_into(order + "H", tiff, entry + 8, 1)
    except struct.error:
        pass  # a malformed block is passed on as it is
    return _EXIF_HEADER + bytes(tiff)


def write_image(
    path: str | os.PathLike, pixels: torch.Tensor, meta: ImageMeta,
    *, format: str | None = None, quality: int | None = None,
) -> None:
    """Write pixels (C, H, W in [0, 1]) with meta's alpha, bit depth and metadata.

    Atomic: the image goes to a temporary file in the target folder, is
    fsynced, then renamed over path, so path never holds a partial image. On
    any error the temporary file is removed. format defaults from the path's
    extension. Palette and CMYK sources are written as RGB(A). Formats that
    cannot hold alpha (JPEG, BMP) drop it; 16 bits are kept for PNG and TIFF
    only; EXIF and ICC profile are kept except in BMP.
    """
    path = os.fspath(path)
    fmt = _output_format(format or os.path.splitext(path)[1], path)
    image, options = _prepare(pixels, meta, fmt, quality)
    try:
        atomic_write(path, lambda file: image.save(_WithoutDescriptor(file), format=fmt, **options))
    except Exception as exc:
        raise ImageError(f"{printable(path)}: cannot write image ({_reason(exc)})") from exc


class _WithoutDescriptor:
    """A file seen through write, seek and tell only. Given a file descriptor, Pillow lets libtiff write
    a TIFF itself, and libtiff reports a full disk as "encoder error -2" after printing its own lines
    to stderr; without one, libtiff encodes into memory blocks that Pillow writes here, so that a write
    error keeps its errno (ENOSPC, EFBIG), as it does for the other formats."""

    def __init__(self, file):
        self.write, self.seek, self.tell = file.write, file.seek, file.tell


def encode_image(
    pixels: torch.Tensor, meta: ImageMeta, *, format: str, quality: int | None = None
) -> bytes:
    """Same as write_image, but return the encoded file's bytes (for stdout)."""
    fmt = _output_format(format, "<output>")
    image, options = _prepare(pixels, meta, fmt, quality)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt, **options)
    except Exception as exc:
        raise ImageError(f"<output>: cannot encode image ({_reason(exc)})") from exc
    return buffer.getvalue()


def _output_format(name: str, path: str) -> str:
    """Pillow format for a format name ("jpg", "PNG") or an extension (".tif")."""
    key = name.lower().lstrip(".")
    fmt = _EXTENSION_FORMATS.get("." + key, key.upper())
    if fmt not in _FORMATS:
        raise ImageError(f"{path}: unsupported output format {name or '(no extension)'}")
    return fmt


def _prepare(pixels: torch.Tensor, meta: ImageMeta, fmt: str, quality: int | None):
    """The Pillow image and save options for writing pixels + meta as fmt (quality: see output_quality)."""
    quality = output_quality(quality, meta)
    caps = _FORMATS[fmt]
    alpha = meta.alpha if caps.alpha else None
    # Pillow has no 16-bit mode with alpha, and no 16-bit colour mode.
    deep = meta.bit_depth == 16 and caps.deep and alpha is None and pixels.shape[0] == 1
    image = _to_pillow(pixels, alpha, deep)
    options: dict = {}
    if caps.metadata and meta.exif:
        options["exif"] = meta.exif
    if caps.metadata and meta.icc_profile:
        options["icc_profile"] = meta.icc_profile
    _add_mark(fmt, options)
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if fmt == "JPEG" and quality >= 90:
        options["subsampling"] = 0  # 4:4:4, full-resolution colour
    if fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    return image, options


_XMP_TAG = 700  # in a TIFF


def _add_mark(fmt: str, options: dict) -> None:
    """Add OUTPUT_MARK to the save options of fmt (BMP cannot hold it)."""
    if fmt in ("JPEG", "WEBP"):
        options["xmp"] = OUTPUT_MARK
    elif fmt == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", OUTPUT_MARK.decode())
    elif fmt == "TIFF":  # Pillow writes a TIFF's tags from its EXIF: the mark goes in among them
        tags = Image.Exif()
        if "exif" in options:
            tags.load(options["exif"])
        tags[_XMP_TAG] = OUTPUT_MARK
        options["exif"] = tags


QUANTISE_ROWS = 256  # rows quantised at a time: a band's float temporaries are small, whatever the image


def _to_pillow(pixels: torch.Tensor, alpha: torch.Tensor | None, deep: bool) -> Image.Image:
    """Quantise (C, H, W) floats to an L, LA, RGB, RGBA or I;16 image, a band of rows at a time, so
    that no full-size float temporary is made (it would add 4 bytes per value at the peak)."""
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"pixels must be (1 or 3, H, W), got {tuple(pixels.shape)}")
    planes = [pixels] if alpha is None else [pixels, alpha]
    height, width = pixels.shape[-2:]
    scale = 65535 if deep else 255
    array = np.empty((height, width, sum(plane.shape[0] for plane in planes)), np.uint16 if deep else np.uint8)
    for top in range(0, height, QUANTISE_ROWS):
        rows = slice(top, top + QUANTISE_ROWS)
        band = torch.cat([plane[:, rows].detach().cpu().float() for plane in planes])
        levels = band.nan_to_num_(nan=0.0).mul_(scale).add_(0.5).floor_().clamp_(0, scale)
        array[rows] = levels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _reason(exc: BaseException) -> str:
    """One short line saying why exc happened."""
    if isinstance(exc, UnidentifiedImageError):
        return "cannot identify image file"  # Pillow's own message repeats the path
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(exc)
