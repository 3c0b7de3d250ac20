"""restore(): encode -> NCA on the latent grid -> decode, tile by tile, on the chosen device.

The whole pipeline runs per tile (encoder, NCA and decoder), so working memory is bounded by the
tile size whatever the image size; only the input and output images are full size (on the CPU).
Each tile's window is its core grown by a halo wide enough (the model's `halo(steps)`) for the
core to equal the untiled result. The engine knows a model only by that face (model.LNCA), and
leaves each tile's compute to a back end (backends.py: torch, onnxruntime or openvino).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from lnca_cli.backends import Backend, open_backend
from lnca_cli.devices import release_freed_memory, resolve_device, threads_for
from lnca_cli.ensemble import VIEWS, check_ensemble, from_view, to_view, view_size
from lnca_cli.errors import SettingsError
from lnca_cli.images import as_rgb
from lnca_cli.model import LNCA, pad_to_multiple
from lnca_cli.tiling import Tile, paste_core, plan_tiles, window_pixels

CPU_TILE = 1024  # pixels: a window of about 1.6k x 1.6k at 64 steps, under 1 GB of working memory


def auto_tile(model: LNCA, steps: int, device: torch.device) -> int:
    """Tile side in pixels: from free GPU memory (a third of it), or a fixed size on the CPU/MPS; never
    less than the halo (at many steps a smaller core would be all halo)."""
    halo_px = model.halo(steps) * model.multiple_of
    if device.type != "cuda":
        return max(CPU_TILE, halo_px)
    free, _ = torch.cuda.mem_get_info(device)
    window_cells = math.isqrt(free // 3 // model.bytes_per_cell())
    core_cells = max(window_cells - 2 * model.halo(steps), 16)
    return max(core_cells * model.multiple_of, halo_px)


def check_tile(model: LNCA, steps: int, tile_px: int) -> None:
    """A tile is 0 (none) or at least the halo: a smaller core would be all halo. Raises SettingsError
    (a ValueError), which names the setting as both the CLI and the library call it: tile."""
    halo_px = model.halo(steps) * model.multiple_of
    if tile_px < 0:
        raise SettingsError(f"tile must be 0 (no tiling) or a positive number of pixels, got {tile_px}")
    if 0 < tile_px < halo_px:
        raise SettingsError(f"tile {tile_px} is smaller than the halo ({halo_px} px at {steps} steps); use at least "
                         f"{halo_px}, or 0 for no tiling")


@torch.inference_mode()
def restore_tensor(image: torch.Tensor, model: LNCA, steps: int | None = None, device: str | torch.device = "auto",
                   tile: int | str = "auto", precision: str = "auto", seed: int = 0,
                   on_progress: Callable[[int, int], None] | None = None,
                   backend: str | Backend = "torch", ensemble: int = 1) -> torch.Tensor:
    """Restore a (C, H, W) float image in [0, 1] (C = 1 or 3); returns the same shape on the CPU.

    `tile` is the core side in pixels (0: no tiling, "auto": see auto_tile); `seed` fixes the
    stochastic updates of models with update_rate < 1; on_progress(done, total) reports progress
    in NCA steps (each tile's, in turn), so that even a one-tile image shows it moving. `backend`
    computes each tile: a name (backends.BACKENDS, opened for this call) or one opened with
    backends.open_backend for many calls, whose own device and precision then hold. `ensemble`
    restores that many views of the image and averages them (ensemble.py).
    """
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with 1 or 3 channels, got shape {tuple(image.shape)}")
    steps = model.config.steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    check_ensemble(ensemble)
    if not isinstance(backend, Backend):
        backend = open_backend(backend, model, steps, device, precision)
    device = backend.device
    scale = model.multiple_of
    tile_px = auto_tile(model, steps, device) if tile == "auto" else int(tile)
    check_tile(model, steps, tile_px)

    rgb = as_rgb(image)
    height, width = rgb.shape[-2:]
    plans = {view: plan_tiles(*_grid(*view_size(height, width, view), scale), tile_px // scale if tile_px else 0,
                              model.halo(steps))
             for view in VIEWS[ensemble]}
    seeds = torch.full((1,), seed, dtype=torch.long, device=device)
    on_step = _step_counter(sum(map(len, plans.values())) * steps, on_progress)
    output = None
    with threads_for(math.prod(_grid(height, width, scale)), device):
        for view, tiles in plans.items():  # one view at a time: a view of a turned image is a copy of it
            restored = from_view(_restore_tiles(to_view(rgb, view), tiles, backend, steps, scale, seeds, on_step), view)
            output = restored if output is None else output.add_(restored)
            del restored
    return _like(output.div_(len(plans)) if len(plans) > 1 else output, image)


def _grid(height: int, width: int, scale: int) -> tuple[int, int]:
    """The latent grid's (rows, columns) for an image of that size."""
    return math.ceil(height / scale), math.ceil(width / scale)


def _restore_tiles(image: torch.Tensor, tiles: list[Tile], backend: Backend, steps: int, scale: int,
                   seeds: torch.Tensor, on_step: Callable[[], None] | None) -> torch.Tensor:
    """The (3, H, W) image restored tile by tile, each tile's core pasted into the output."""
    output = torch.empty((3, *image.shape[-2:]), dtype=torch.float32)
    for t in tiles:
        output_window = _restore_window(image, t, backend, steps, scale, seeds, on_step)
        paste_core(output, output_window, t, scale)
        del output_window
        release_freed_memory()
    return output


def _step_counter(total: int, on_progress: Callable[[int, int], None] | None) -> Callable[[], None] | None:
    """A callback for each NCA step that reports (steps done, total) to on_progress."""
    if on_progress is None:
        return None
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        on_progress(done, total)

    return step


def _like(rgb: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Back to the input's channels: a grayscale input gets the mean of the restored channels."""
    return rgb.mean(0, keepdim=True) if image.shape[0] == 1 else rgb


@torch.inference_mode()
def oracle_tensor(clean: torch.Tensor, degraded: torch.Tensor, model: LNCA,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """LNCA.oracle on (C, H, W) images, untiled: what a perfect NCA would give with this autoencoder."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    model = model.to(device).eval()
    result = model.oracle(as_rgb(clean)[None].to(device), as_rgb(degraded)[None].to(device))[0].float().cpu()
    return _like(result, clean)


def _restore_window(image: torch.Tensor, t: Tile, backend: Backend, steps: int, scale: int, seeds: torch.Tensor,
                    on_step: Callable[[], None] | None) -> torch.Tensor:
    rows, cols = window_pixels(t, scale, *image.shape[-2:])
    pixels = pad_to_multiple(image[None, :, rows, cols].float(), scale)
    return backend.restore_padded(pixels, steps, t.origin, seeds, on_step)[0]


def restore(image, model: LNCA, steps: int | None = None, device: str | torch.device = "auto",
            tile: int | str = "auto", precision: str = "auto", seed: int = 0,
            on_progress: Callable[[int, int], None] | None = None, backend: str | Backend = "torch",
            ensemble: int = 1):
    """Restore a torch (C, H, W) float tensor in [0, 1], or a numpy (H, W) / (H, W, C) array.

    Arrays may be uint8, uint16 or float in [0, 1]; the result has the input's type, layout and dtype.
    An alpha channel (4th channel of an array) is passed through untouched.
    """
    kwargs = dict(steps=steps, device=device, tile=tile, precision=precision, seed=seed, on_progress=on_progress,
                  backend=backend, ensemble=ensemble)
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
