"""restore(): encode -> NCA on the latent grid -> decode, tile by tile, on the chosen device.

The whole pipeline runs per tile (encoder, NCA and decoder), so working memory is bounded by the
tile size whatever the image size; only the input and output images are full size (on the CPU).
Each tile's window is its core grown by a halo wide enough (model.halo_cells) for the core to
equal the untiled result.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lnca_cli.model import LNCA, halo_cells, pad_to_multiple
from lnca_cli.tiling import Tile, paste_core, plan_tiles, window_pixels

DEVICES = ("auto", "cpu", "cuda", "mps")
CPU_TILE = 1024  # pixels: a window of about 1.6k x 1.6k at 64 steps, under 1 GB of working memory


def libc_call(name: str, *args: int) -> None:
    """Call a glibc function by name; nothing where the C library is not glibc."""
    try:
        getattr(ctypes.CDLL("libc.so.6"), name)(*args)
    except (OSError, AttributeError):
        pass


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse rather than give it back to the system at once.

    Each NCA step on a CPU tile allocates and frees tensors of tens of MB. glibc serves blocks that
    large with fresh mmaps and unmaps them when freed, so every step page-faults them in again: at
    1024 px tiles as much system time as compute. Served from the heap and kept (up to 1 GiB of
    free heap), they are reused: `lnca denoise` 2.2x faster (docs/BENCHMARKS.md). Process-wide, so
    the CLI's restore and train commands call it; library users may call it too.
    """
    libc_call("mallopt", -4, 0)  # M_MMAP_MAX: large blocks from the heap too
    libc_call("mallopt", -1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere).

    restore_tensor calls it after each tile: what a tile freed is kept (keep_freed_memory) for
    that tile's steps to reuse, but left over it would pile up between the long-lived image
    buffers, tile after tile. Trimming once per tile keeps the peak to the image buffers plus one
    tile's working memory (50 MP on the CPU: 4.5 -> 2.7 GiB peak RSS, and 16% faster).
    """
    libc_call("malloc_trim", 0)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, and a container's CPU quota (cgroup v2)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return count


PHYSICAL_CORES = torch.get_num_threads()  # torch's own count, before anyone changes it (or OMP_NUM_THREADS)


def default_threads() -> int:
    """The cores free for lnca: torch's count of physical cores, within usable_cpus(), less those
    that other processes keep busy (the 1-minute load average). On a busy machine a thread more
    than the free cores makes every step wait for a descheduled one: 2-3x slower, not faster."""
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(PHYSICAL_CORES, usable_cpus()) - busy)


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads (None: default_threads()); returns the count. Never more than usable_cpus()."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    count = default_threads() if threads is None else min(threads, usable_cpus())
    torch.set_num_threads(count)
    return count


#: Below this many latent cells a step is too small to share between threads: one is fastest.
SMALL_GRID_CELLS = 1024


@contextlib.contextmanager
def threads_for(cells: int, device: torch.device):
    """One CPU thread for a tiny image (a 64x64 photo is 256 cells), torch's setting otherwise."""
    saved = torch.get_num_threads()
    if device.type == "cpu" and cells < SMALL_GRID_CELLS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class DeviceError(Exception):
    """The asked device is not available or not usable for the asked precision."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; any other name must be available."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise DeviceError(f"unknown device '{name}'; expected one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' asked for, but no CUDA GPU is available (try --device cpu)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' asked for, but Apple MPS is not available (try --device cpu)")
    if index and int(index) >= torch.cuda.device_count():
        raise DeviceError(f"device '{name}' asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    return torch.device(name)


def bytes_per_cell(model: LNCA) -> int:
    """Rough peak working memory per latent cell during one NCA step (float32)."""
    c = model.config
    return 4 * (4 * c.cell_channels + 6 * c.embed_dim + 16 * c.ae_channels)


def auto_tile(model: LNCA, steps: int, device: torch.device) -> int:
    """Tile side in pixels: from free GPU memory (a third of it), or a fixed size on the CPU/MPS."""
    if device.type != "cuda":
        return CPU_TILE
    free, _ = torch.cuda.mem_get_info(device)
    window_cells = math.isqrt(free // 3 // bytes_per_cell(model))
    core_cells = max(window_cells - 2 * halo_cells(steps), 16)
    return core_cells * model.config.downsample


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), as oneDNN sees it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, name: str = "auto") -> str:
    """What `name` means on `device`: auto is bf16 on a CPU that has it (matmuls and convs in bf16,
    norms and the cells' residual stream in fp32; measured faster at the same PSNR, see
    docs/BENCHMARKS.md), fp32 elsewhere. Raises DeviceError for a precision the device lacks."""
    if name not in PRECISIONS:
        raise DeviceError(f"unknown precision '{name}'; expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
    if name == "fp16" and device.type not in ("cuda", "mps"):
        raise DeviceError("fp16 (--half) needs a GPU (cuda or mps); on the CPU use --precision bf16 or fp32")
    if name == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise DeviceError("this CPU has no bf16 arithmetic (AVX512-BF16 or AMX); use --precision fp32")
    return name


def autocast(device: torch.device, name: str = "auto"):
    """The autocast context for a precision (see resolve_precision)."""
    resolved = resolve_precision(device, name)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if resolved == "bf16" else torch.float16)


@torch.inference_mode()
def restore_tensor(image: torch.Tensor, model: LNCA, steps: int | None = None, device: str | torch.device = "auto",
                   tile: int | str = "auto", precision: str = "auto", seed: int = 0,
                   on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Restore a (C, H, W) float image in [0, 1] (C = 1 or 3); returns the same shape on the CPU.

    `tile` is the core side in pixels (0: no tiling, "auto": see auto_tile); `seed` fixes the
    stochastic updates of models with update_rate < 1; on_tile(done, total) reports progress.
    """
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with 1 or 3 channels, got shape {tuple(image.shape)}")
    steps = model.config.steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = device if isinstance(device, torch.device) else resolve_device(device)
    precision_context = autocast(device, precision)
    model = model.to(device).eval()
    scale = model.config.downsample
    tile_px = auto_tile(model, steps, device) if tile == "auto" else int(tile)
    if tile_px < 0:
        raise ValueError(f"tile must be 0 (no tiling) or a positive number of pixels, got {tile_px}")

    rgb = _as_rgb(image)
    height, width = rgb.shape[-2:]
    grid_h, grid_w = math.ceil(height / scale), math.ceil(width / scale)
    tiles = plan_tiles(grid_h, grid_w, tile_px // scale if tile_px else 0, halo_cells(steps))
    output = torch.empty((3, height, width), dtype=torch.float32)
    seeds = torch.full((1,), seed, dtype=torch.long, device=device)
    with threads_for(grid_h * grid_w, device):
        for done, t in enumerate(tiles, 1):
            output_window = _restore_window(rgb, t, model, steps, scale, device, precision_context, seeds)
            paste_core(output, output_window, t, scale)
            del output_window
            release_freed_memory()
            if on_tile:
                on_tile(done, len(tiles))
    return _like(output, image)


def _as_rgb(image: torch.Tensor) -> torch.Tensor:
    """The model sees colour: a grayscale (1, H, W) image is repeated on three channels."""
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def _like(rgb: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Back to the input's channels: a grayscale input gets the mean of the restored channels."""
    return rgb.mean(0, keepdim=True) if image.shape[0] == 1 else rgb


@torch.inference_mode()
def oracle_tensor(clean: torch.Tensor, degraded: torch.Tensor, model: LNCA,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """LNCA.oracle on (C, H, W) images, untiled: what a perfect NCA would give with this autoencoder."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    model = model.to(device).eval()
    result = model.oracle(_as_rgb(clean)[None].to(device), _as_rgb(degraded)[None].to(device))[0].float().cpu()
    return _like(result, clean)


def _restore_window(image: torch.Tensor, t: Tile, model: LNCA, steps: int, scale: int, device: torch.device,
                    precision_context, seeds: torch.Tensor) -> torch.Tensor:
    rows, cols = window_pixels(t, scale, *image.shape[-2:])
    pixels = pad_to_multiple(image[None, :, rows, cols].float().to(device), scale)
    with precision_context:
        result = model.restore_padded(pixels, steps, origin=t.origin, seeds=seeds)
    return result[0].float().cpu()


def restore(image, model: LNCA, steps: int | None = None, device: str | torch.device = "auto",
            tile: int | str = "auto", precision: str = "auto", seed: int = 0,
            on_tile: Callable[[int, int], None] | None = None):
    """Restore a torch (C, H, W) float tensor in [0, 1], or a numpy (H, W) / (H, W, C) array.

    Arrays may be uint8, uint16 or float in [0, 1]; the result has the input's type, layout and dtype.
    An alpha channel (4th channel of an array) is passed through untouched.
    """
    kwargs = dict(steps=steps, device=device, tile=tile, precision=precision, seed=seed, on_tile=on_tile)
    if isinstance(image, torch.Tensor):
        return restore_tensor(image, model, **kwargs)
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an (H, W) or (H, W, C) array with 1, 3 or 4 channels, got {array.shape}")
    peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(array.dtype, 1.0)
    hwc = array[..., None] if array.ndim == 2 else array
    colour, alpha = hwc[..., :3] if hwc.shape[2] == 4 else hwc, hwc[..., 3:] if hwc.shape[2] == 4 else None
    tensor = torch.from_numpy(np.ascontiguousarray(colour, dtype=np.float32) / peak).permute(2, 0, 1)
    restored = restore_tensor(tensor, model, **kwargs).permute(1, 2, 0).numpy()
    if peak > 1:
        restored = np.clip(np.floor(restored * peak + 0.5), 0, peak)
    restored = restored.astype(array.dtype)
    if alpha is not None:
        restored = np.concatenate([restored, alpha], axis=2)
    return restored[..., 0] if array.ndim == 2 else restored
