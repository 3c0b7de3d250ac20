"""Training: phase 1 (autoencoder), phase 2 (NCA with a pool), phase 3 (end to end), resumable
checkpoints.

Phases 1 and 2 follow the paper (docs/METHOD.md), without the reference code's three slips: the
NCA step count is drawn per batch, the cosine schedule counts every optimiser step (two per
batch), and the weights kept are the best by validation PSNR, not the last. Phase 3 is ours:
encoder, NCA and decoder trained together on the pixel loss (BatchNorm statistics frozen), which
passes the ceiling a frozen autoencoder sets on the NCA.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from lnca_cli.devices import DeviceError, autocast, resolve_precision
from lnca_cli.files import atomic_write
from lnca_cli.hub import load_weights, save_weights
from lnca_cli.images import ImageError, as_rgb, find_images, read_image
from lnca_cli.metrics import psnr, quantize8, ssim
from lnca_cli.model import LNCA, PRESETS, LNCAConfig
from lnca_cli.recipe import PIXEL_LOSSES, TrainConfig
from lnca_cli.tasks import get_task


def degrade_for_task(task: str, clean: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A blind degradation for a task (tasks.py): (degraded, mask of corrupted pixels)."""
    return get_task(task).degrade_for_training(clean, gen)


def crop_margin(config: TrainConfig) -> int:
    """Pixels each crop is cut larger on every side, degraded, then cut back (--degrade-before-crop):
    the task's reach, so that a blur reads the photo around the crop as it would in a whole blurred
    photo, not the crop's reflection. Otherwise 0: with 64x64 crops and blurs of up to 21 pixels,
    reflections reach into most of a crop, where a whole photo's blur has them only at its border."""
    return get_task(config.task).training_reach() if config.degrade_before_crop else 0


def degraded_crops(task: str, clean: torch.Tensor, margin: int,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, degraded, mask) of crops `margin` pixels larger on every side, degraded whole, then cut back."""
    degraded, mask = degrade_for_task(task, clean, gen)
    inside = (..., slice(margin, clean.shape[-2] - margin), slice(margin, clean.shape[-1] - margin))
    return clean[inside], degraded[inside], mask[inside]


# ---------------------------------------------------------------- data


def list_images(folder: str | Path) -> list[Path]:
    """The training photos: every image file in the folder and below (images.find_images)."""
    files = find_images(folder)
    if not files:
        raise ValueError(f"{folder}: no images found")
    return files


def load_photos(files: list[Path], min_side: int) -> list[torch.Tensor]:
    """Colour photos as uint8 (3, H, W) tensors; unreadable or too small files are skipped."""
    photos = []
    for path in files:
        try:
            pixels, _ = read_image(path)
        except ImageError:
            continue
        if min(pixels.shape[-2:]) < min_side:
            continue
        pixels = as_rgb(pixels)
        photos.append((pixels * 255).round().to(torch.uint8))
    if not photos:
        raise ValueError(f"no usable photos of at least {min_side}x{min_side} pixels")
    return photos


def split_photos(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """A fixed validation split of the training files (at least one, unless there is only one file)."""
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(len(files) - 1, max(1, round(fraction * len(files))))
    return [files[i] for i in order[n_val:]], [files[i] for i in order[:n_val]]


def random_crops(photos: list[torch.Tensor], batch: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """A batch of random crops at native resolution, randomly flipped and rotated by 90 degree steps."""
    crops = []
    for i in torch.randint(len(photos), (batch,), generator=gen).tolist():
        photo = photos[i]
        y = torch.randint(photo.shape[1] - crop + 1, (1,), generator=gen).item()
        x = torch.randint(photo.shape[2] - crop + 1, (1,), generator=gen).item()
        patch = photo[:, y:y + crop, x:x + crop]
        if torch.rand((), generator=gen) < 0.5:
            patch = patch.flip(-1)
        patch = torch.rot90(patch, int(torch.randint(4, (1,), generator=gen)), dims=(1, 2))
        crops.append(patch)
    return torch.stack(crops).float() / 255


def center_crops(photos: list[torch.Tensor], crop: int) -> torch.Tensor:
    out = []
    for photo in photos:
        y, x = (photo.shape[1] - crop) // 2, (photo.shape[2] - crop) // 2
        out.append(photo[:, y:y + crop, x:x + crop])
    return torch.stack(out).float() / 255


# ---------------------------------------------------------------- optimisation


def normalize_gradients(params) -> None:
    """The paper's per-tensor gradient normalisation: each gradient scaled to unit L2 norm."""
    for p in params:
        if p.grad is not None:
            p.grad /= p.grad.norm() + 1e-8


def cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, step: int, total: int, base_lr: float) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in opt.param_groups for p in group["params"]]
    normalize_gradients(params)
    for group in opt.param_groups:
        group["lr"] = cosine_lr(base_lr, step, total)
    opt.step()


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(a, b)


# ---------------------------------------------------------------- phase 1: autoencoder


def autoencoder_losses(model: LNCA, clean: torch.Tensor, degraded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reconstruction (x100), triplet (x10) and task (x10) losses on a triplet (clean, degraded, other)."""
    other = clean.roll(1, dims=0)
    enc, dec = model.encoder, model.decoder
    (z_a, s_a), (z_p, s_p), (z_n, s_n) = enc(clean), enc(degraded), enc(other)
    out_a, out_p, out_n = dec(z_a, s_a), dec(z_p, s_p), dec(z_n, s_n)
    reconstruction = mse(out_a, clean) + mse(out_p, degraded) + mse(out_n, other)
    triplet = F.relu(mse(z_a, z_p) - mse(z_a, z_n) + 1.0)
    task = mse(out_p * mask, degraded * mask)
    return 100 * reconstruction + 10 * triplet + 10 * task


def equivalence_loss(model: LNCA, clean: torch.Tensor, degraded: torch.Tensor, mask: torch.Tensor,
                     gen: torch.Generator) -> torch.Tensor:
    """The second step: the corruption must live in the latent, and the degraded skip must not carry it."""
    (z_a, s_a), (z_p, s_p) = model.encoder(clean), model.encoder(degraded)
    jitter = torch.randn(z_a.shape, generator=gen, device=z_a.device) * 0.5
    loss = mse(model.decoder(z_p, s_a) * mask, degraded * mask)
    loss = loss + mse(model.decoder(z_a + jitter, s_p) * mask, clean * mask)
    return 100 * loss


# ---------------------------------------------------------------- phase 2: NCA


def nca_losses(model: LNCA, cells: torch.Tensor, clean: torch.Tensor, z_clean: torch.Tensor,
               skip: torch.Tensor) -> torch.Tensor:
    """Pixel (x100), latent (x100) and overflow (x1 each) losses on the NCA's cells after T steps."""
    nca = model.nca
    out = nca.output(cells)
    hidden = nca.hidden(cells)
    image = model.decoder(out, skip)
    overflow = (out - out.clamp(0, 1)).abs().mean() + (hidden - hidden.clamp(-1, 1)).abs().mean()
    return 100 * mse(image, clean) + 100 * mse(out, z_clean) + overflow


@dataclass
class Pool:
    """A replay buffer of NCA states with what each needs for its loss; makes the output an attractor."""

    cells: torch.Tensor
    clean: torch.Tensor
    z_clean: torch.Tensor
    skip: torch.Tensor

    def state(self) -> dict[str, torch.Tensor]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- phase 3: end to end

def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The differences between neighbouring pixels of (N, C, H, W), down and across."""
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def pixel_loss(kind: str, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Phase 3's loss on the restored image: MSE (what PSNR scores), L1, Charbonnier (a smooth L1),
    or L1 plus the L1 of the image gradients' error ("l1-gradient": it asks for sharp edges where
    they are, which a blur spreads thin and the plain L1 of pixels rewards little)."""
    if kind == "mse":
        return mse(restored, clean)
    if kind == "l1":
        return F.l1_loss(restored, clean)
    if kind == "l1-gradient":
        edges = [F.l1_loss(mine, theirs) for mine, theirs in zip(image_gradients(restored), image_gradients(clean))]
        return F.l1_loss(restored, clean) + sum(edges)
    if kind == "charbonnier":
        return torch.sqrt((restored - clean).pow(2) + 1e-6).mean()
    raise ValueError(f"unknown loss '{kind}'; expected one of {', '.join(PIXEL_LOSSES)}")


def freeze_batchnorm(model: LNCA) -> None:
    """BatchNorm layers in eval mode: their statistics stay those of phase 1 (batches of 8 crops
    would make them noisy), while their scale and shift still learn."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()


# ---------------------------------------------------------------- the run

def model_config(config: TrainConfig) -> LNCAConfig:
    """The architecture a recipe trains: its preset, with a residual output if asked."""
    return dataclasses.replace(PRESETS[config.preset], residual=config.residual)


PHASES = {1: "autoencoder", 2: "NCA", 3: "end to end"}


STEP_CANDIDATES = (8, 12, 16, 24, 32, 48, 64)
STEPS_TOLERANCE_DB = 0.05


def fewest_good_steps(scores: dict[int, float]) -> int:
    """The smallest step count scoring within STEPS_TOLERANCE_DB of the best one."""
    best = max(scores.values())
    return min(t for t, score in scores.items() if score >= best - STEPS_TOLERANCE_DB)


TRAINING_PRECISIONS = ("auto", "fp32", "bf16")  # fp16 would need loss scaling: not offered


def training_precision(device: torch.device, name: str = "auto") -> str:
    """What a training run computes in: under bf16 autocast, the matmuls and convs run in bf16 while
    the weights, the optimiser and the norms stay fp32. auto: bf16 on a CUDA GPU, fp32 elsewhere.
    Raises DeviceError for a precision the device lacks (devices.resolve_precision)."""
    if name not in TRAINING_PRECISIONS:
        raise DeviceError(f"unknown training precision '{name}'; expected one of {', '.join(TRAINING_PRECISIONS)}")
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "fp32"
    return resolve_precision(device, name)


class Trainer:
    def __init__(self, config: TrainConfig, photos_train: list[torch.Tensor], photos_val: list[torch.Tensor],
                 device: str = "cpu", log: Callable[[dict], None] | None = None,
                 note: Callable[[str], None] | None = None, precision: str = "auto"):
        self.cfg, self.device = config, torch.device(device)
        self.precision = training_precision(self.device, precision)
        self.photos, self.log = photos_train, log or (lambda row: None)
        self.note = note or (lambda message: None)  # what is going on between batches, for people
        self.model = LNCA(model_config(config)).to(self.device)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.phase, self.iteration = 1, 0
        self.best_psnr, self.best_state = -math.inf, {}
        self.ae_opt = torch.optim.Adam(self._ae_params(), lr=config.lr)
        self.nca_opt = torch.optim.Adam(self.model.nca.parameters(), lr=config.nca_lr)
        self.e2e_opt = torch.optim.Adam(self._e2e_params(), lr=config.e2e_lr)
        self.pool: Pool | None = None
        self.val_clean, self.val_degraded = self._validation_set(photos_val)

    def _ae_params(self):
        return list(self.model.encoder.parameters()) + list(self.model.decoder.parameters())

    def _e2e_params(self):
        return self.model.nca.parameters() if self.cfg.freeze_autoencoder else self.model.parameters()

    def _validation_set(self, photos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        margin = crop_margin(self.cfg)
        crop = min([self.cfg.val_crop] + [min(p.shape[-2:]) - 2 * margin for p in photos]) // 4 * 4
        clean = center_crops(photos, crop + 2 * margin)
        clean, degraded, _ = degraded_crops(self.cfg.task, clean, margin, torch.Generator().manual_seed(1234))
        return clean, degraded

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        margin = crop_margin(self.cfg)
        clean = random_crops(self.photos, self.cfg.batch, self.cfg.crop + 2 * margin, self.gen)
        clean, degraded, mask = degraded_crops(self.cfg.task, clean, margin, self.gen)
        return clean.to(self.device), degraded.to(self.device), mask.to(self.device)

    def _autocast(self):
        return autocast(self.device, self.precision)

    # -- phase 1
    def ae_iteration(self) -> float:
        cfg, model = self.cfg, self.model
        model.train()
        clean, degraded, mask = self._batch()
        total = 2 * cfg.ae_iterations  # two optimiser steps per batch (the reference code counted one)
        with self._autocast():
            loss = autoencoder_losses(model, clean, degraded, mask)
        optimizer_step(self.ae_opt, loss, 2 * self.iteration, total, cfg.lr)
        with self._autocast():
            eq = equivalence_loss(model, clean, degraded, mask, self.gen)
        optimizer_step(self.ae_opt, eq, 2 * self.iteration + 1, total, cfg.lr)
        return loss.item() + eq.item()

    # -- phase 2
    def _fresh(self) -> Pool:
        clean, degraded, _ = self._batch()
        with torch.no_grad():
            z_p, skip = self.model.encoder(degraded)
            z_clean, _ = self.model.encoder(clean)
        return Pool(self.model.nca.seed(z_p), clean, z_clean, skip)

    def _init_pool(self) -> None:
        self.note(f"phase 2: filling the pool with {self.cfg.pool_size} NCA states before the first batch")
        parts = [self._fresh() for _ in range(math.ceil(self.cfg.pool_size / self.cfg.batch))]
        self.pool = Pool(*(torch.cat([getattr(p, f.name) for p in parts])[: self.cfg.pool_size]
                           for f in dataclasses.fields(Pool)))

    def _nca_step(self, sample: Pool, step: int) -> tuple[float, torch.Tensor]:
        cfg = self.cfg
        steps = int(torch.randint(cfg.min_steps, cfg.max_steps + 1, (1,), generator=self.gen))  # per batch
        seeds = torch.randint(2**31 - 1, (sample.cells.shape[0],), generator=self.gen).to(self.device)
        with self._autocast():
            cells = self.model.nca.run(sample.cells, steps, seeds=seeds)
            loss = nca_losses(self.model, cells, sample.clean, sample.z_clean, sample.skip)
        optimizer_step(self.nca_opt, loss, step, 2 * cfg.nca_iterations, cfg.nca_lr)
        return loss.item(), cells.detach().float()

    def nca_iteration(self) -> float:
        """One step from fresh seeds, one from pooled states (written back), as in the paper."""
        self.model.eval()  # autoencoder frozen, BatchNorm in eval mode
        self.model.nca.train()
        if self.pool is None:
            self._init_pool()
        fresh_loss, _ = self._nca_step(self._fresh(), 2 * self.iteration)
        idx = torch.randint(self.pool.cells.shape[0], (self.cfg.batch,), generator=self.gen).to(self.pool.cells.device)
        pooled = Pool(*(getattr(self.pool, f.name)[idx] for f in dataclasses.fields(Pool)))
        pool_loss, cells = self._nca_step(pooled, 2 * self.iteration + 1)
        self.pool.cells[idx] = cells
        return 0.5 * (fresh_loss + pool_loss)

    # -- phase 3
    def e2e_iteration(self) -> float:
        """One batch through encoder, NCA (T drawn per batch) and decoder; every parameter learns."""
        cfg, model = self.cfg, self.model
        model.train()
        freeze_batchnorm(model)
        clean, degraded, _ = self._batch()
        steps = int(torch.randint(cfg.min_steps, cfg.max_steps + 1, (1,), generator=self.gen))
        with self._autocast():
            loss = pixel_loss(cfg.loss, model(degraded, steps=steps), clean)
        self.e2e_opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.e2e_opt.param_groups:
            group["lr"] = cosine_lr(cfg.e2e_lr, self.iteration, cfg.e2e_iterations)
        self.e2e_opt.step()
        return loss.item()

    # -- validation
    @torch.no_grad()
    def validate(self, steps: int | None = None) -> dict[str, float]:
        """Phase 1 scores the autoencoder's oracle (clean latent, degraded skip): the NCA's ceiling."""
        self.model.eval()
        psnrs, ssims = [], []
        for clean, degraded in zip(self.val_clean.split(8), self.val_degraded.split(8)):
            clean, degraded = clean.to(self.device), degraded.to(self.device)
            if self.phase == 1:
                out = self.model.oracle(clean, degraded)
            else:
                out = self.model(degraded, steps=steps or self.validation_steps())
            out = quantize8(out.float())
            psnrs.append(psnr(out, clean))
            ssims.append(ssim(out, clean))
        return {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean())}

    def validation_steps(self) -> int:
        """Phase 3 trains at T in [min_steps, max_steps] without a pool: it is scored at max_steps."""
        return self.cfg.max_steps if self.phase == 3 else self.model.config.steps

    def _maybe_keep_best(self, scores: dict[str, float]) -> None:
        if self.phase >= 2 and scores["psnr"] > self.best_psnr:
            self.best_psnr = scores["psnr"]
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def run(self, should_stop: Callable[[], bool] = lambda: False,
            on_iteration: Callable[[dict], None] | None = None) -> bool:
        """Train until every phase is done (True) or should_stop() says so (False, resumable)."""
        while self.phase in PHASES:
            limit = self.phase_iterations(self.phase)
            step = {1: self.ae_iteration, 2: self.nca_iteration, 3: self.e2e_iteration}[self.phase]
            while self.iteration < limit:
                if should_stop():
                    return False
                started = time.perf_counter()
                loss = step()
                self.iteration += 1
                row = {"phase": self.phase, "iteration": self.iteration, "loss": loss,
                       "seconds": time.perf_counter() - started}
                if self.iteration % self.cfg.val_every == 0 or self.iteration == limit:
                    row.update(self.validate())
                    self._maybe_keep_best(row)
                self.log(row)
                if on_iteration:
                    on_iteration(row)
            self.phase, self.iteration = self.phase + 1, 0
            if self.phase == 3:
                self.pool = None  # phase 3 starts each batch afresh: checkpoints stay small
        return True

    def phase_iterations(self, phase: int) -> int:
        return {1: self.cfg.ae_iterations, 2: self.cfg.nca_iterations, 3: self.cfg.e2e_iterations}[phase]

    def adopt_model(self, source: LNCA) -> None:
        """Start from a trained model of the same sizes, or of a narrower rule or fewer decoder blocks
        (LNCA.grow_from), and go straight to phase 3 (end to end). A residual model taken from one that
        is not starts as the identity (Decoder.start_as_identity)."""
        try:
            if any(getattr(source.config, f) != getattr(self.model.config, f) for f in LNCA.GROWABLE):
                self.model.grow_from(source)
            else:
                self.model.load_state_dict(source.state_dict())
        except (RuntimeError, ValueError):
            raise ValueError(f"it does not fit preset '{self.cfg.preset}'") from None
        if source.config.residual and not self.model.config.residual:
            raise ValueError("its decoder gives a correction to the input (residual output): give --residual")
        if self.model.config.residual and not source.config.residual:
            self.model.decoder.start_as_identity()
        self.phase, self.iteration = 3, 0

    def adopt_autoencoder(self, source: LNCA) -> None:
        """Take a trained model's autoencoder and go straight to phase 2: another NCA on the same
        latent (how the architecture table compares update rules on equal ground)."""
        try:
            self.model.encoder.load_state_dict(source.encoder.state_dict())
            self.model.decoder.load_state_dict(source.decoder.state_dict())
        except RuntimeError:
            raise ValueError(f"its autoencoder does not fit preset '{self.cfg.preset}' (latent "
                             f"{source.config.latent_channels} channels, skip {source.config.ae_channels}; the preset "
                             f"has {self.model.config.latent_channels} and {self.model.config.ae_channels})") from None
        self.phase, self.iteration = 2, 0

    # -- checkpoints
    def checkpoint(self) -> dict:
        return {
            "train_config": json.dumps(dataclasses.asdict(self.cfg)),
            "phase": self.phase, "iteration": self.iteration, "best_psnr": self.best_psnr,
            "best_state": self.best_state, "model": self.model.state_dict(),
            "ae_opt": self.ae_opt.state_dict(), "nca_opt": self.nca_opt.state_dict(),
            "e2e_opt": self.e2e_opt.state_dict(),
            "pool": self.pool.state() if self.pool is not None else {},
            "rng": self.gen.get_state(), "torch_rng": torch.get_rng_state(),  # the latter drives dropout
        }

    def save_checkpoint(self, path: str | Path) -> None:
        state = self.checkpoint()
        atomic_write(path, lambda file: torch.save(state, file))

    def load_checkpoint(self, path: str | Path) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        saved = TrainConfig(**json.loads(ckpt["train_config"]))
        if model_config(saved) != model_config(self.cfg) or saved.task != self.cfg.task:
            residual = ", residual output" if saved.residual else ""
            raise ValueError(f"{path}: checkpoint is for task {saved.task}, preset {saved.preset}{residual}")
        self.model.load_state_dict(ckpt["model"])
        self.ae_opt.load_state_dict(ckpt["ae_opt"])
        self.nca_opt.load_state_dict(ckpt["nca_opt"])
        if "e2e_opt" in ckpt:  # checkpoints from before phase 3 have none
            self.e2e_opt.load_state_dict(ckpt["e2e_opt"])
        self.phase, self.iteration = ckpt["phase"], ckpt["iteration"]
        self.best_psnr, self.best_state = ckpt["best_psnr"], ckpt["best_state"]
        self.pool = Pool(**ckpt["pool"]) if ckpt["pool"] else None
        self.gen.set_state(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])

    # -- the shipped file
    def best_model(self) -> LNCA:
        model = LNCA(self.model.config)
        model.load_state_dict(self.best_state or self.model.state_dict())
        return model.eval()

    def choose_steps(self, candidates: Iterator[int] = STEP_CANDIDATES) -> tuple[int, dict[int, float]]:
        """The fewest inference steps whose validation PSNR is within STEPS_TOLERANCE_DB of the best
        (validation split only): each step costs time, a hundredth of a dB is not worth it."""
        model = self.model
        self.model = self.best_model().to(self.device)
        scores = {t: self.validate(steps=t)["psnr"] for t in candidates}
        self.model = model
        return fewest_good_steps(scores), scores

    def export(self, path: str | Path, metadata: dict[str, str]) -> dict[int, float]:
        """Save the best weights with the validation-chosen default step count."""
        steps, scores = self.choose_steps()
        best = self.best_model()
        model = LNCA(dataclasses.replace(best.config, steps=steps))
        model.load_state_dict(best.state_dict())
        info = {"task": self.cfg.task, "train_config": json.dumps(dataclasses.asdict(self.cfg)),
                "val_psnr_by_steps": json.dumps(scores), **metadata}
        save_weights(model, path, info)
        return scores


def train(data: str | Path, out: str | Path, config: TrainConfig, *, val: str | Path | None = None,
          checkpoint: str | Path | None = None, minutes: float | None = None, device: str = "cpu",
          log_path: str | Path | None = None, metadata: dict[str, str] | None = None,
          autoencoder: str | Path | None = None, init: str | Path | None = None,
          on_iteration: Callable[[dict], None] | None = None, note: Callable[[str], None] | None = None,
          should_stop: Callable[[], bool] = lambda: False, precision: str = "auto") -> dict:
    """Train on a folder of photos and write the best weights to `out`.

    With `checkpoint`, resumes from it if it exists and saves to it when `minutes` run out or
    should_stop() says so (checked before each batch: a signal's stop); the best weights so far are
    written to `out` then too (call again to go on). With `autoencoder` (a
    weights file), phase 1 is skipped and that model's autoencoder is used; with `init`, phases 1
    and 2 are skipped and the whole model is trained on from that one. `precision`: see
    training_precision. Returns whether the run
    finished, and the validation scores of the weights written (None if none were: no NCA yet).
    """
    files = list_images(data)
    if val is None:
        train_files, val_files = split_photos(files, config.val_fraction, config.seed)
    else:
        train_files, val_files = files, list_images(val)
    torch.manual_seed(config.seed)
    log_file = open(log_path, "a") if log_path else None

    def log(row: dict) -> None:
        if log_file:
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()

    note = note or (lambda message: None)
    note(f"loading {len(train_files)} training and {len(val_files)} validation photos")
    margin = crop_margin(config)
    trainer = Trainer(config, load_photos(train_files, config.crop + 2 * margin),
                      load_photos(val_files, 16 + 2 * margin), device, log, note, precision)
    if checkpoint and Path(checkpoint).exists():
        trainer.load_checkpoint(checkpoint)
    elif autoencoder is not None or init is not None:
        source = autoencoder if init is None else init
        adopt = trainer.adopt_autoencoder if init is None else trainer.adopt_model
        try:
            adopt(load_weights(source)[0])
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    deadline = time.monotonic() + 60 * minutes if minutes is not None else math.inf

    def after_iteration(row: dict) -> None:
        if checkpoint and "psnr" in row:  # a checkpoint at every validation: a crash loses little
            trainer.save_checkpoint(checkpoint)
        if on_iteration:
            on_iteration(row)

    try:
        finished = trainer.run(lambda: time.monotonic() > deadline or should_stop(), after_iteration)
        if checkpoint:
            trainer.save_checkpoint(checkpoint)
        scores = None
        if finished or trainer.best_state:
            scores = trainer.export(out, {"data": str(data), "seed": str(config.seed), **(metadata or {})})
        return {"finished": finished, "val_psnr": trainer.best_psnr, "val_psnr_by_steps": scores}
    finally:
        if log_file:
            log_file.close()


def read_log(log_path: str | Path) -> list[dict]:
    """A training log's rows (JSONL), one per phase and iteration in their order. A run killed after
    its last checkpoint logged batches that its resume does again: the later row of each is kept."""
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    latest = {(row["phase"], row["iteration"]): row for row in rows}
    return [latest[key] for key in sorted(latest)]


def plot_log(log_path: str | Path, png: str | Path) -> None:
    """Draw the loss curves of a training log (JSONL) to a PNG, one line per phase."""
    from lnca_cli.plot import line_plot

    rows = read_log(log_path)
    series = {f"phase {p} loss": [(r["iteration"], r["loss"]) for r in rows if r["phase"] == p] for p in PHASES}
    series = {name: points for name, points in series.items() if points}
    line_plot(series, "lnca training loss", "iteration", "loss", log_y=True).save(png)
