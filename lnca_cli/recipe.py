"""The training recipe: every setting of `lnca train`, as plain data (no torch, so that the CLI can
show the defaults in --help without loading it). train.py runs it; checkpoints and weights files
record it as JSON."""
from __future__ import annotations

import math
from dataclasses import dataclass

PIXEL_LOSSES = ("mse", "l1", "charbonnier", "l1-gradient")  # phase 3's choices (train.pixel_loss)


@dataclass
class TrainConfig:
    task: str = "denoise"
    preset: str = "wide-dw"
    crop: int = 64
    batch: int = 16
    ae_iterations: int = 2000
    nca_iterations: int = 2000
    lr: float = 1e-2  # phase 1 (the paper's, both phases)
    nca_lr: float = 1e-2  # phase 2
    e2e_iterations: int = 0  # phase 3: end to end
    e2e_lr: float = 1e-3
    loss: str = "mse"  # phase 3's pixel loss: PIXEL_LOSSES
    freeze_autoencoder: bool = False  # phase 3 trains the NCA alone (the recipe comparison's other arm)
    residual: bool = False  # phase 3 from --init: the decoder learns a correction to the input (model.py)
    degrade_before_crop: bool = False  # degrade crops cut larger by the task's reach, then cut them to size
    min_steps: int = 8
    max_steps: int = 32
    pool_size: int = 1024
    val_every: int = 200
    val_fraction: float = 0.05
    val_crop: int = 128
    seed: int = 0

    @classmethod
    def paper(cls, task: str, num_images: int) -> "TrainConfig":
        """The paper's configuration: 32x32 crops, batch 8, 10 + 10 epochs of one crop per image."""
        epoch = math.ceil(num_images / 8)
        return cls(task=task, preset="paper", crop=32, batch=8, ae_iterations=10 * epoch,
                   nca_iterations=10 * epoch, val_every=epoch)
