"""Steps against quality and time: PSNR, SSIM and seconds per megapixel at each NCA step count, to choose --steps."""
from __future__ import annotations

import math
from pathlib import Path

from lnca_cli.bench.harness import Note, machine_info, quiet
from lnca_cli.errors import SettingsError
from lnca_cli.evaluate import evaluate, image_files, model_name
from lnca_cli.images import read_image
from lnca_cli.model import LNCA

STEP_COUNTS = (8, 16, 32, 64, 128)


def check_step_counts(step_counts: tuple[int, ...]) -> None:
    if not step_counts or min(step_counts) < 1:
        raise SettingsError(f"step counts must be at least 1, got {list(step_counts)}")


def bench_steps(data: str | Path, model: LNCA, degradation: str = "gaussian:25",
                step_counts: tuple[int, ...] = STEP_COUNTS, device: str = "cpu", limit: int | None = None,
                seed: int = 0, note: Note = quiet) -> dict:
    """PSNR, SSIM and seconds per megapixel at each step count, on the same degraded images (lnca eval)."""
    check_step_counts(step_counts)
    paths = image_files(data)[:limit]
    megapixels = sum(math.prod(read_image(path)[0].shape[-2:]) for path in paths) / 1e6
    evaluate(model, data, degradation, steps=min(step_counts), device=device, limit=1, seed=seed)  # warm-up
    rows = []
    for steps in step_counts:
        note(f"steps: {steps}")
        mean = evaluate(model, data, degradation, steps=steps, device=device, limit=limit, seed=seed).mean()
        rows.append({"steps": steps, "psnr": mean["psnr"], "ssim": mean["ssim"],
                     "seconds_per_mp": mean["seconds"] * len(paths) / megapixels})
    return {"benchmark": "steps", "machine": machine_info(device), "data": str(data), "degradation": degradation,
            "model": model_name(model), "images": len(paths),
            "megapixels": megapixels, "rows": rows}
