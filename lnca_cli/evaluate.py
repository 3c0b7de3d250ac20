"""Benchmark a model on a folder of clean images: degrade, restore, score (what `lnca eval` runs).

The protocol, which published numbers follow:

- Images: the files directly in the folder whose extension is in ``images.SUPPORTED_EXTENSIONS``,
  in sorted order, read with ``images.read_image`` at their native size, values in [0, 1].
  Grayscale images stay one channel; an alpha channel is ignored. An unreadable file stops the
  evaluation rather than being skipped, since skipping would change the mean.
- Degradation: the spec (``degrade.parse_degradation``) is applied in float32 on the CPU, with a
  ``torch.Generator`` seeded with ``seed + i`` for the i-th image, so results are reproducible
  and adding images does not change the noise of earlier ones.
- Model input: the degraded float image as it is. Gaussian noise is not clipped, as in the
  standard denoising benchmarks; the other degradations already lie in [0, 1].
- Scores: PSNR and SSIM (``metrics``) against the clean image quantised to 8 bits. The restored
  image is quantised to 8 bits (clipped and rounded, as saving it would) before scoring, and so
  is the degraded image for the "input" scores: those are what a viewer of the saved files sees.
  SSIM uses a Gaussian 11x11 window of std 1.5, K1 = 0.01, K2 = 0.03, each colour channel
  separately (RGB, not luma), averaged. Both metrics use a data range of 1. Beside them, in 8-bit
  levels, the restore's colour bias per channel and its colour mottle in flat areas (``metrics``).
- Seconds: wall time of the restore alone (not reading, degrading or scoring).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from lnca_cli.backends import open_backend
from lnca_cli.degrade import parse_degradation
from lnca_cli.devices import resolve_device
from lnca_cli.engine import oracle_tensor, restore_tensor
from lnca_cli.ensemble import check_ensemble
from lnca_cli.errors import SettingsError
from lnca_cli.images import SUPPORTED_EXTENSIONS, ImageMeta, read_image, write_image
from lnca_cli.metrics import (MOTTLE_PROTOCOL, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, channel_bias, colour_mottle,
                              psnr, quantize8, ssim)
from lnca_cli.model import LNCA
from lnca_cli.targets import Target, targets_for

GAP = 4  # pixels of white between the panels of a --save image
LABEL_HEIGHT = 13  # pixels of the label strip above them (Pillow's default font)
METRICS = ("psnr_input", "ssim_input", "psnr", "ssim", "bias_r", "bias_g", "bias_b", "mottle", "seconds")


@dataclass
class ImageScore:
    name: str
    psnr_input: float  # degraded vs clean
    ssim_input: float
    psnr: float  # restored vs clean
    ssim: float
    bias_r: float  # mean signed error of the restore per channel, in 8-bit levels (grayscale: all three alike)
    bias_g: float
    bias_b: float
    mottle: float  # colour noise left in the flattest fifth of the image, low-passed, in 8-bit levels
    seconds: float


@dataclass
class EvalReport:
    degradation: str
    model: str
    steps: int
    images: list[ImageScore]
    seed: int = 0
    device: str = "cpu"
    backend: str = "torch fp32"  # what computed the restores, and in which precision
    ensemble: int = 1  # views restored and averaged per image (ensemble.py)
    targets: list[Target] = field(default_factory=list)  # the quality targets that apply (targets.py)

    def mean(self) -> dict[str, float]:
        """The mean of each metric over the images."""
        return {key: sum(getattr(s, key) for s in self.images) / len(self.images) for key in METRICS}

    def to_dict(self) -> dict:
        """JSON-ready: the settings, the protocol, the means and the per-image scores."""
        return {
            "degradation": self.degradation,
            "model": self.model,
            "steps": self.steps,
            "ensemble": self.ensemble,
            "device": self.device,
            "backend": self.backend,
            "protocol": {
                "seed": self.seed,
                "noise_seed": "seed + image index, in sorted file order",
                "model_input": "degraded float image, unclipped",
                "quantization": "8-bit: clean, restored and degraded images are clipped and rounded before scoring",
                "data_range": 1.0,
                "color_space": "RGB (grayscale images: their one channel)",
                "ssim": {
                    "window": "gaussian",
                    "window_size": SSIM_WINDOW,
                    "sigma": SSIM_SIGMA,
                    "k1": SSIM_K1,
                    "k2": SSIM_K2,
                    "channels": "each separately, averaged",
                },
                "mottle": MOTTLE_PROTOCOL,
            },
            "mean": self.mean(),
            "targets": [target.to_dict() for target in self.targets],
            "images": [dataclasses.asdict(score) for score in self.images],
        }


def evaluate(model: LNCA, data: str | Path, degradation: str, *, steps: int | None = None,
             device: str | torch.device = "cpu", tile: int | str = "auto", seed: int = 0,
             limit: int | None = None, save: str | Path | None = None, oracle: bool = False,
             on_image: Callable[[ImageScore], None] | None = None, backend: str = "torch",
             graph: str | Path | None = None, ensemble: int = 1) -> EvalReport:
    """Score `model` on the clean images in the folder `data` under `degradation` (see the module doc).

    `limit` keeps the first N images; `save` is a folder that gets one PNG per image, degraded |
    restored | clean side by side; `on_image` is called with each image's score as it is done.
    `oracle` scores the autoencoder's ceiling instead of the model (see LNCA.oracle), in torch.
    `backend` computes the restores (backends.py; `graph`: its ONNX file), at its default precision;
    `ensemble` views of each image are restored and averaged (ensemble.py).
    Bad settings and a folder without images raise SettingsError before any restoring.
    """
    degrade = parse_degradation(degradation)
    if limit is not None and limit < 1:
        raise SettingsError(f"limit must be at least 1, got {limit}")
    paths = image_files(data)[:limit]
    steps = model.config.steps if steps is None else steps
    if oracle and backend != "torch":
        raise SettingsError("the oracle runs in torch only; leave out --backend")
    check_ensemble(ensemble)
    if oracle and ensemble != 1:
        raise SettingsError("the oracle is one view; leave out --ensemble")
    runner = None if oracle else open_backend(backend, model, steps, device, graph=graph)
    device = runner.device if runner else resolve_device(device) if isinstance(device, str) else device
    if save is not None:
        Path(save).mkdir(parents=True, exist_ok=True)
    name = model_name(model) + (" (oracle)" if oracle else "")
    report = EvalReport(degradation, name, steps, [], seed=seed, device=str(device),
                        backend=f"{runner.name} {runner.precision}" if runner else "torch fp32", ensemble=ensemble)
    panel_names = _panel_names(paths)
    for index, path in enumerate(paths):
        clean, _ = read_image(path)
        generator = torch.Generator().manual_seed(seed + index)
        degraded = degrade(clean[None], generator)[0]
        start = time.perf_counter()
        if oracle:
            restored = oracle_tensor(clean, degraded, model, device)
        else:
            restored = restore_tensor(degraded, model, steps=steps, tile=tile, seed=seed + index, backend=runner,
                                      ensemble=ensemble)
        seconds = time.perf_counter() - start
        score = score_image(path.name, clean, degraded, restored, seconds)
        if save is not None:
            _save_panels(Path(save) / panel_names[path], degraded, restored, clean, score)
        report.images.append(score)
        if on_image:
            on_image(score)
    if not oracle:
        mean = report.mean()
        report.targets = targets_for(Path(data).name, len(paths), degradation, mean["psnr"], mean["psnr_input"])
    return report


def image_files(data: str | Path) -> list[Path]:
    """The protocol's image set: supported image files directly in the folder, sorted by name.

    Listed here rather than shared with `lnca restore`'s file search, so that the set of
    benchmark images cannot change when that does.
    """
    folder = Path(data)
    if not folder.is_dir():
        raise SettingsError(f"{data}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.is_file())
    if not files:
        raise SettingsError(f"{data}: no images ({', '.join(sorted(SUPPORTED_EXTENSIONS))}) in this folder")
    return files


def score_image(name: str, clean: torch.Tensor, degraded: torch.Tensor, restored: torch.Tensor,
                seconds: float) -> ImageScore:
    """Scores of one (C, H, W) image; every image is quantised to 8 bits first."""
    clean, degraded, restored = (quantize8(x[None]) for x in (clean, degraded, restored))
    bias = channel_bias(restored, clean)[0].expand(3).tolist()
    return ImageScore(
        name=name,
        psnr_input=psnr(degraded, clean).item(),
        ssim_input=ssim(degraded, clean).item(),
        psnr=psnr(restored, clean).item(),
        ssim=ssim(restored, clean).item(),
        bias_r=bias[0], bias_g=bias[1], bias_b=bias[2],
        mottle=colour_mottle(restored, clean).item(),
        seconds=seconds,
    )


def side_by_side(degraded: torch.Tensor, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The three (C, H, W) images in a row, white gaps of GAP pixels between: (C, H, 3W + 2 GAP).

    Clipped to [0, 1], since unclipped Gaussian noise leaves the degraded image outside it.
    """
    gap = torch.ones(*clean.shape[:-1], GAP)
    return torch.cat([degraded, gap, restored, gap, clean], dim=-1).clamp(0, 1)


def _panel_names(paths: list[Path]) -> dict[Path, str]:
    """`--save` file names: kodim01.png for kodim01.png or .jpg; the whole name (a.jpg.png) only where
    two images share a stem."""
    stems = [p.stem for p in paths]
    return {p: f"{p.stem if stems.count(p.stem) == 1 else p.name}.png" for p in paths}


def label_strip(labels: list[str], widths: list[int], channels: int) -> torch.Tensor:
    """A white strip of LABEL_HEIGHT pixels with one black label at the start of each panel (C, h, W)."""
    from PIL import Image, ImageDraw

    strip = Image.new("L", (sum(widths) + GAP * (len(widths) - 1), LABEL_HEIGHT), 255)
    draw, left = ImageDraw.Draw(strip), 0
    for label, width in zip(labels, widths):
        draw.text((left + 2, 1), label, fill=0)
        left += width + GAP
    pixels = torch.frombuffer(bytearray(strip.tobytes()), dtype=torch.uint8).view(1, LABEL_HEIGHT, -1) / 255
    return pixels.expand(channels, -1, -1)


def _save_panels(path: Path, degraded: torch.Tensor, restored: torch.Tensor, clean: torch.Tensor,
                 score: ImageScore) -> None:
    """degraded | restored | clean, each labelled (with its PSNR against the clean image)."""
    panels = side_by_side(degraded, restored, clean)
    labels = [f"degraded {score.psnr_input:.2f} dB", f"restored {score.psnr:.2f} dB", "clean"]
    panels = torch.cat([label_strip(labels, [clean.shape[-1]] * 3, panels.shape[0]), panels], dim=-2)
    gray = panels.shape[0] == 1
    meta = ImageMeta(mode="L" if gray else "RGB", format="PNG", bit_depth=8, alpha=None, exif=None,
                     icc_profile=None, grayscale=gray)
    write_image(path, panels, meta)


def model_name(model: LNCA) -> str:
    """The name `hub.load_model` gave the model, or "unnamed" for one built in code."""
    return getattr(model, "info", {}).get("name", "unnamed")
