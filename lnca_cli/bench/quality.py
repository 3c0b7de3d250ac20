"""Quality against peers: PSNR, SSIM, colour mottle and seconds per megapixel of lnca and of the tools
users pick instead (peers.py), on the same degraded images, under `lnca eval`'s protocol."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lnca_cli.bench.harness import Note, machine_info, quiet
from lnca_cli.bench.peers import PEERS, Peer, available, version
from lnca_cli.degrade import MASK_NOISE_STD, motion_blur_kernel, parse_degradation
from lnca_cli.devices import resolve_device
from lnca_cli.engine import restore_tensor
from lnca_cli.ensemble import check_ensemble, views_averaged
from lnca_cli.errors import SettingsError
from lnca_cli.evaluate import image_files, score_image
from lnca_cli.hub import WeightsError, load_model, registry_name
from lnca_cli.images import read_image
from lnca_cli.metrics import MOTTLE_PROTOCOL, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW
from lnca_cli.model import LNCA
from lnca_cli.tasks import task_for_degradation

QUALITY_DEGRADATIONS = ("gaussian:15", "gaussian:25", "gaussian:50", "masked:0.5", "motion:7", "motion:15")
def choose_peers(names: str | None) -> tuple[Peer, ...]:
    """The peers named in a comma-separated list (all of them for None); an unknown name is a ValueError."""
    if names is None:
        return PEERS
    known = {peer.name: peer for peer in PEERS}
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SettingsError(f"unknown peer {', '.join(unknown)}; expected some of {', '.join(known)}")
    return tuple(known[name] for name in chosen)


def task_of(degradation: str) -> str:
    """The lnca task (and so default model) for a degradation spec (tasks.py)."""
    parse_degradation(degradation)  # a one-line ValueError for a bad spec
    return task_for_degradation(degradation).name


def load_trained(model: str | None, task: str, offline: bool = False) -> LNCA:
    """The model to score: quality needs trained weights, so a missing one is a one-line error."""
    try:
        return load_model(model, task, offline)
    except WeightsError as exc:
        raise WeightsError(f"lnca bench needs trained weights for {task}: {exc}") from None


def degrade_image(clean: torch.Tensor, spec: str, seed: int) -> tuple[torch.Tensor, float | None, np.ndarray | None]:
    """(degraded, noise sigma on the [0, 1] scale or None, blur kernel or None) for a (C, H, W) image.

    The same as `lnca eval` (a generator seeded with `seed`), except that a motion blur's random angle
    is drawn here, the same way, so that the kernel can be handed to the deblurring peers.
    """
    generator = torch.Generator().manual_seed(seed)
    name, *args = spec.split(":")
    kernel = None
    if name == "motion":
        angle = float(args[1]) if len(args) > 1 else 360.0 * torch.rand(1, generator=generator).item()
        spec = f"motion:{args[0]}:{angle!r}"
        kernel = motion_blur_kernel(int(float(args[0])), angle).double().numpy()
    degraded = parse_degradation(spec)(clean[None], generator)[0]
    sigma = {"gaussian": lambda: float(args[0]) / 255, "masked": lambda: math.sqrt(float(args[0])) * MASK_NOISE_STD}
    return degraded, sigma[name]() if name in sigma else None, kernel


def _peer_restore(peer: Peer, degraded: torch.Tensor, sigma: float | None, kernel: np.ndarray | None) -> torch.Tensor:
    image = degraded.permute(1, 2, 0).double().numpy()
    return torch.from_numpy(np.ascontiguousarray(peer.run(image, sigma, kernel))).permute(2, 0, 1).float()


def _kind(spec: str) -> str:
    """Which peers compare with lnca on this degradation: its task's (tasks.Task.peer_kind)."""
    return task_for_degradation(spec).peer_kind


def bench_quality(data: str | Path, models: dict[str, LNCA], degradations: tuple[str, ...] = QUALITY_DEGRADATIONS,
                  peers: tuple[Peer, ...] = PEERS, steps: int | None = None, device: str = "cpu",
                  limit: int | None = None, seed: int = 0, note: Note = quiet,
                  ensembles: tuple[int, ...] = (1,)) -> dict:
    """One table per degradation: the degraded input, lnca (models: task -> model; a row per count of
    `ensembles`, ensemble.py) and each peer that applies, on the same degraded images; mean PSNR/SSIM,
    colour mottle (metrics.colour_mottle) and seconds per megapixel."""
    if not ensembles:
        raise SettingsError("--ensembles needs at least one count")
    for views in ensembles:
        check_ensemble(views)
    paths = image_files(data)[:limit]
    torch_device = resolve_device(device)
    tables = []
    for spec in degradations:
        task = task_of(spec)
        model = models[task]
        rows = {"input": _row("input", "the degraded image itself")}
        methods: dict[str, Callable] = {}
        for views in ensembles:
            name = "lnca" if views == 1 else f"lnca x{views}"
            methods[name] = lambda d, sigma, kernel, i, views=views: restore_tensor(
                d, model, steps=steps, device=torch_device, seed=seed + i, ensemble=views)
            rows[name] = _row(name, f"model {registry_name(model)}, {steps or model.config.steps} steps, blind"
                                    + views_averaged(views))
        for peer in (p for p in peers if p.kind == _kind(spec)):
            rows[peer.name] = _row(peer.name, peer.settings, version(peer))
            if available(peer):
                methods[peer.name] = lambda d, sigma, kernel, i, peer=peer: _peer_restore(peer, d, sigma, kernel)
            else:
                rows[peer.name]["status"] = f"not installed (pip install {peer.package})"
        megapixels = 0.0
        for index, path in enumerate(paths):
            clean = read_image(path)[0]
            degraded, sigma, kernel = degrade_image(clean, spec, seed + index)
            megapixels += clean.shape[-1] * clean.shape[-2] / 1e6
            note(f"quality {spec}: {path.name}")
            for name, method in list(methods.items()):
                if index == 0:  # warm-up on a corner: imports and one-time set-up are not timed
                    _try(rows[name], lambda: method(degraded[:, :48, :48], sigma, kernel, index))
                restored, seconds = _try(rows[name], lambda: _timed(method, degraded, sigma, kernel, index))
                if restored is None:
                    del methods[name]
                    continue
                _add(rows[name], score_image(path.name, clean, degraded, restored, seconds), "psnr", "ssim")
            _add(rows["input"], score_image(path.name, clean, degraded, degraded, 0.0), "psnr_input", "ssim_input")
        tables.append({"degradation": spec, "task": task, "images": len(paths), "megapixels": megapixels,
                       "rows": [_mean(row, megapixels) for row in rows.values()]})
    return {"benchmark": "quality", "machine": machine_info(device), "data": str(data),
            "settings": {"steps": steps or "the model's", "ensembles": list(ensembles), "device": str(torch_device),
                         "limit": limit, "seed": seed},
            "protocol": _protocol(), "tables": tables}


def _row(method: str, settings: str, version_: str | None = None) -> dict:
    return {"method": method, "settings": settings, "version": version_, "status": "ok",
            "psnr": 0.0, "ssim": 0.0, "mottle": 0.0, "seconds": 0.0, "count": 0}


def _timed(method: Callable, degraded: torch.Tensor, sigma, kernel, index: int) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    restored = method(degraded, sigma, kernel, index)
    return restored, time.perf_counter() - start


def _try(row: dict, run: Callable):
    """Run a method; a failure marks its row (one line) instead of stopping the benchmark."""
    if row["status"] != "ok":
        return None, 0.0
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - a peer's bug must not cost the other rows
        row["status"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None, 0.0


def _add(row: dict, score, psnr_key: str, ssim_key: str) -> None:
    row["psnr"] += getattr(score, psnr_key)
    row["ssim"] += getattr(score, ssim_key)
    row["mottle"] += score.mottle
    row["seconds"] += score.seconds
    row["count"] += 1


def _mean(row: dict, megapixels: float) -> dict:
    count = row.pop("count")
    seconds = row.pop("seconds")
    if row["status"] != "ok" or not count:
        return {**row, "psnr": None, "ssim": None, "mottle": None, "seconds_per_mp": None}
    return {**row, "psnr": row["psnr"] / count, "ssim": row["ssim"] / count, "mottle": row["mottle"] / count,
            "seconds_per_mp": None if row["method"] == "input" else seconds / megapixels}


def _protocol() -> dict:
    return {
        "degradation": "as `lnca eval`: image i degraded with a generator seeded seed + i; Gaussian noise "
                       "unclipped; a motion blur's angle drawn from that generator",
        "same_inputs": "every method restores the same degraded float image",
        "peers_given": "noise peers get the true sigma (masked noise: sqrt(p) x 0.2, the corruption's std); "
                       "blur peers get the true kernel; lnca gets neither (blind)",
        "scores": "PSNR and SSIM on 8-bit images (clipped and rounded), data range 1, RGB",
        "mottle": MOTTLE_PROTOCOL,
        "ssim": {"window": "gaussian", "window_size": SSIM_WINDOW, "sigma": SSIM_SIGMA, "k1": SSIM_K1,
                 "k2": SSIM_K2, "channels": "each separately, averaged", "covariance": "population"},
        "seconds_per_mp": "wall time of the restore alone (not reading or scoring) over the images' megapixels, "
                          "after a warm-up on a 48x48 corner",
    }
