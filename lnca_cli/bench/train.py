"""Training iterations per second: the fast rule against the previous one (previous_rule.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from lnca_cli.bench.harness import LATENT_PRESET, Note, machine_info, quiet, time_pair
from lnca_cli.devices import resolve_device
from lnca_cli.errors import SettingsError
from lnca_cli.model import LNCA, PRESETS


@dataclass
class TrainSettings:
    batch: int = 8
    crop: int = 64
    steps: int = 16
    repeats: int = 5
    warmup: int = 1
    device: str = "cpu"

    def check(self) -> None:
        if min(self.batch, self.steps, self.repeats) < 1 or self.warmup < 0:
            raise SettingsError("batch, steps and repeats must be at least 1, warmup at least 0")
        if self.crop < 8 or self.crop % 4:
            raise SettingsError(f"crop must be a multiple of 4 of at least 8, got {self.crop}")


def _training_step(model: LNCA, clean: torch.Tensor, noisy: torch.Tensor, steps: int, mode: str) -> Callable[[], None]:
    """One training iteration as lnca train runs it: phase 2 (the NCA alone on a frozen autoencoder's
    latent, gradients to the NCA only) or phase 3 (end to end, gradients to everything)."""
    optimizer = torch.optim.Adam(model.nca.parameters() if mode == "nca" else model.parameters(), lr=1e-4)

    def nca_step() -> None:
        with torch.no_grad():
            z, skip = model.encoder(noisy)
        cells = model.nca.run(model.nca.seed(z), steps)
        F.mse_loss(model.decoder(model.nca.output(cells), skip), clean).backward()

    def e2e_step() -> None:
        F.mse_loss(model(noisy, steps), clean).backward()

    def iteration() -> None:
        optimizer.zero_grad(set_to_none=True)
        (nca_step if mode == "nca" else e2e_step)()
        optimizer.step()

    return iteration


def bench_train(settings: TrainSettings | None = None, note: Note = quiet) -> dict:
    """Iterations per second of phase 2 (NCA) and phase 3 (end to end) training steps, with the fast
    rule and with the previous one (previous_rule.py), interleaved in one run; random weights of the
    shipped configuration (time does not depend on them)."""
    from lnca_cli.previous_rule import PreviousRuleLNCA

    s = settings or TrainSettings()
    s.check()
    device = resolve_device(s.device)
    torch.manual_seed(0)
    fast = LNCA(PRESETS[LATENT_PRESET]).to(device).train()
    previous = PreviousRuleLNCA.of(fast).to(device)
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(s.batch, 3, s.crop, s.crop, generator=generator).to(device)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=generator).to(device)).clamp(0, 1)
    rows = []
    for mode in ("nca", "e2e"):
        note(f"train: {mode} steps, fast and previous rule, {s.repeats} each")
        ms = time_pair({rule: _training_step(model, clean, noisy, s.steps, mode)
                        for rule, model in (("fast", fast), ("previous", previous))}, s.repeats, s.warmup, device)
        rows.append({"mode": mode, "fast_ms": ms["fast"], "previous_ms": ms["previous"],
                     "fast_per_s": 1000 / ms["fast"], "previous_per_s": 1000 / ms["previous"],
                     "speedup": ms["previous"] / ms["fast"]})
    return {"benchmark": "train", "machine": machine_info(str(device)), "settings": asdict(s), "rows": rows}
