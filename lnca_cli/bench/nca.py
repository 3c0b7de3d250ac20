"""The paper's claim measured: the latent NCA (model.LNCA) against the same NAFCA rule run on pixels
(model.PixelNCA), with the same steps, update rate and batch: inference and one training step, peak
memory and latency per input size, and the largest input each handles within a memory budget.

How things are measured (latency and peak memory themselves: harness.py):

- Memory on the CPU: with isolate=True (the default) every measurement runs in a fresh Python
  process (nca_memory_here in a worker): it builds the model and input, runs a tiny warm-up so that
  one-time allocations (thread pools, oneDNN kernels) are not counted, then measures one run. In a
  fresh process nothing freed earlier can be reused. isolate=False measures in this process after
  handing freed heap memory back to the system (malloc_trim): quicker, for the tests, a little
  less exact.
- Inference memory does not grow with the number of steps (each step's activations are freed
  before the next; a test checks it), so it is measured at MEMORY_STEPS steps to save time; a
  training step keeps every step's activations for backpropagation, so it is measured at its full
  step count.
- Timing and memory do not depend on the weights, so the models are randomly initialised, of the
  shipped configuration (PRESETS["wide-dw"]).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from lnca_cli.bench.harness import (LATENT_PRESET, MIB, Note, exact_malloc, fit_line, machine_info, peak_memory, quiet,
                                    ratio_of, run_worker, time_pair)
from lnca_cli.devices import resolve_device
from lnca_cli.errors import SettingsError
from lnca_cli.model import LNCA, PRESETS, LNCAConfig, PixelNCA

MEMORY_STEPS = 3  # inference memory is the same at any step count (see the module doc)
PAPER = {"memory_saving_pct": 94.0, "latency_saving_pct": 80.0, "input_ratio": 16.0}


@dataclass
class NCASettings:
    sizes: tuple[int, ...] = (32, 64, 128, 256)  # square input sides for inference
    train_sizes: tuple[int, ...] = (32, 64, 128)  # ... and for one training step
    steps: int | None = None  # inference steps; None: the config's (64)
    train_steps: int = 32  # the paper trains with T drawn up to 32
    batch: int = 1
    repeats: int = 3
    warmup: int = 1
    budget_mib: float = 2048.0  # for "the largest input that fits"
    device: str = "cpu"
    isolate: bool = True  # CPU memory in a fresh process per measurement (see the module doc)
    config: LNCAConfig = field(default_factory=lambda: PRESETS[LATENT_PRESET])

    def check(self) -> None:
        for name in ("sizes", "train_sizes"):
            sides = getattr(self, name)
            if not sides or any(side < 8 or side % 4 for side in sides):
                raise SettingsError(f"{name}: give sides of at least 8 pixels, multiples of 4; got {list(sides)}")
        for name in ("train_steps", "batch", "repeats"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.budget_mib <= 0:
            raise SettingsError("warmup must be >= 0 and the memory budget positive")


def build_models(config: LNCAConfig, seed: int = 0) -> dict[str, torch.nn.Module]:
    """The two models compared: same NAFCA rule, steps, update rate; random weights (see the module doc)."""
    torch.manual_seed(seed)
    return {"latent": LNCA(config), "pixel": PixelNCA(config)}


def _input(side: int, batch: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, side, side, generator=generator).to(device)


def _runner(model: torch.nn.Module, x: torch.Tensor, steps: int, mode: str) -> Callable[[], None]:
    """One inference pass, or one training step (MSE to a same-size target, Adam over every parameter)."""
    if mode == "inference":
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(x, steps)

        return infer
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(model(x, steps), x).backward()
        optimizer.step()

    return train_step


def nca_memory_here(kind: str, config: dict, side: int, batch: int, steps: int, mode: str,
                    device: str = "cpu", threads: int | None = None) -> int:
    """Peak bytes of one run of one model, measured in this process (what a worker process runs)."""
    if threads:
        torch.set_num_threads(threads)
    torch_device = torch.device(device)
    if torch_device.type == "cpu":
        exact_malloc()  # before anything is allocated, so that every large block is mapped alone
    model = build_models(LNCAConfig.from_dict(config))[kind].to(torch_device)
    x = _input(side, batch, torch_device)
    _runner(model, x, 1, mode)()  # warm-up, one step: one-time allocations (threads, kernels) are not counted
    return peak_memory(_runner(model, x, steps, mode), torch_device)


def nca_memory(kind: str, side: int, mode: str, steps: int, s: NCASettings) -> int:
    """Peak bytes of one run: in a fresh process on the CPU when s.isolate (see the module doc)."""
    args = dict(kind=kind, config=s.config.to_dict(), side=side, batch=s.batch, steps=steps, mode=mode,
                device=str(resolve_device(s.device)), threads=torch.get_num_threads())
    if s.isolate and resolve_device(s.device).type == "cpu":
        return run_worker({"job": "nca-memory", "args": args})
    return nca_memory_here(**args)


def _side_for(fit: tuple[float, float], budget: float) -> int:
    """The largest square side (a multiple of 4) whose predicted memory, a + b * side^2, fits the budget."""
    intercept, slope = fit
    if slope <= 0:
        raise ValueError("memory did not grow with the input; measure at larger sizes")
    return max(4, int(math.sqrt(max(budget - intercept, 0.0) / slope)) // 4 * 4)


def find_max_side(points: list[tuple[float, float]], budget: float, measure: Callable[[int], int],
                  tries: int = 4) -> tuple[int, int]:
    """(side, bytes): the largest square input measured within the budget.

    `points` are (pixels, bytes) measurements. Each try fits a line through the two largest ones
    (where memory is most nearly linear in pixels), measures at the side it predicts for the budget,
    and adds that point: secant steps that stop when a measurement is within 5% under the budget.
    """
    points = sorted(points)
    for _ in range(tries):
        side = _side_for(fit_line(points[-2:]), budget)
        if any(pixels == side * side for pixels, _ in points):
            break  # converged: measured there already
        used = measure(side)
        points = sorted(points + [(side * side, used)])
        if budget * 0.95 <= used <= budget:
            break
    within = [(math.isqrt(int(pixels)), used) for pixels, used in points if used <= budget]
    if not within:
        raise ValueError("no measured input fits the memory budget; give smaller sizes or a larger budget")
    return max(within)


def _measure_mode(mode: str, sizes: tuple[int, ...], steps: int, s: NCASettings, note: Note) -> dict:
    """Rows of memory and latency for both models at each size, and each model's memory fit.

    A model is skipped ("over budget") at a size where the fit of its smaller sizes predicts more
    than the budget, so the pixel NCA never asks for more memory than the machine can give.
    """
    device = resolve_device(s.device)
    budget = s.budget_mib * MIB
    models = build_models(s.config)
    for model in models.values():
        model.to(device)
    memory_steps = min(steps, MEMORY_STEPS) if mode == "inference" else steps
    points: dict[str, list[tuple[float, float]]] = {kind: [] for kind in models}
    rows = []
    for side in sorted(sizes):
        row: dict = {"side": side}
        runs = {}
        for kind, model in models.items():
            if len(points[kind]) >= 2 and _predict(fit_line(points[kind]), side) > budget:
                row[f"{kind}_mib"] = row[f"{kind}_ms"] = None
                continue
            note(f"nca {mode}: {kind} {side}x{side}, memory")
            used = nca_memory(kind, side, mode, memory_steps, s)
            points[kind].append((side * side, used))
            row[f"{kind}_mib"] = used / MIB
            runs[kind] = _runner(model, _input(side, s.batch, device), steps, mode)
        note(f"nca {mode}: {side}x{side}, latency of {', '.join(runs) or 'nothing'}")
        row.update({f"{kind}_ms": ms for kind, ms in time_pair(runs, s.repeats, s.warmup, device).items()})
        row["memory_ratio"] = ratio_of(row["latent_mib"], row["pixel_mib"])
        row["latency_ratio"] = ratio_of(row["latent_ms"], row["pixel_ms"])
        rows.append(row)
    return {"rows": rows, "points": points, "memory_steps": memory_steps}


def _predict(fit: tuple[float, float], side: int) -> float:
    return fit[0] + fit[1] * side * side


def _headline(rows: list[dict]) -> dict:
    """The ratios at the largest size both models ran at."""
    both = [row for row in rows if row["memory_ratio"] is not None and row["latency_ratio"] is not None]
    if not both:
        return {"at_side": None, "memory_ratio": None, "latency_ratio": None}
    row = both[-1]
    return {"at_side": row["side"], "memory_ratio": row["memory_ratio"], "latency_ratio": row["latency_ratio"]}


def _max_sides(mode: str, points: dict, steps: int, s: NCASettings, note: Note) -> dict:
    budget = s.budget_mib * MIB
    result = {}
    for kind in ("latent", "pixel"):
        note(f"nca {mode}: the largest {kind} input within {s.budget_mib:g} MiB")
        side, used = find_max_side(points[kind], budget, lambda side: nca_memory(kind, side, mode, steps, s))
        result[kind] = {"side": side, "mib": used / MIB}
    return result


def bench_nca(settings: NCASettings | None = None, note: Note = quiet) -> dict:
    """Latent NCA vs pixel NCA: memory and latency per size, inference and training, and max sides."""
    s = settings or NCASettings()
    s.check()
    steps = s.steps or s.config.steps
    inference = _measure_mode("inference", s.sizes, steps, s, note)
    train = _measure_mode("train", s.train_sizes, s.train_steps, s, note)
    for name, measured in (("inference", inference), ("train", train)):
        for kind, points in measured["points"].items():
            if len(points) < 2:
                raise ValueError(f"the {kind} NCA ran at fewer than two {name} sizes within the budget; "
                                 f"give smaller sizes or a larger budget")
    max_inference = _max_sides("inference", inference["points"], inference["memory_steps"], s, note)
    max_train = _max_sides("train", train["points"], s.train_steps, s, note)
    head, train_head = _headline(inference["rows"]), _headline(train["rows"])
    result = {
        "benchmark": "nca",
        "machine": machine_info(s.device),
        "settings": {**{k: v for k, v in asdict(s).items() if k != "config"}, "steps": steps,
                     "memory_steps": inference["memory_steps"], "latent_preset": LATENT_PRESET,
                     "config": s.config.to_dict(), "weights": "random initialisation (time and memory do not "
                                                              "depend on the weights)"},
        **head,
        "max_side_latent": max_inference["latent"]["side"],
        "max_side_pixel": max_inference["pixel"]["side"],
        "max_side_mib": {kind: v["mib"] for kind, v in max_inference.items()},
        "train_at_side": train_head["at_side"],
        "train_memory_ratio": train_head["memory_ratio"],
        "train_latency_ratio": train_head["latency_ratio"],
        "train_max_side_latent": max_train["latent"]["side"],
        "train_max_side_pixel": max_train["pixel"]["side"],
        "train_max_side_mib": {kind: v["mib"] for kind, v in max_train.items()},
        "inference": inference["rows"],
        "train": train["rows"],
        "paper": PAPER,
    }
    result.update(_savings(result))
    return result


def _savings(result: dict) -> dict:
    """The paper's terms: percent of memory and latency saved, and how many times more pixels fit."""
    def pct(ratio):
        return None if ratio is None else 100 * (1 - ratio)

    def pixels(latent, pixel):
        return (latent / pixel) ** 2 if latent and pixel else None

    return {
        "memory_saving_pct": pct(result["memory_ratio"]),
        "latency_saving_pct": pct(result["latency_ratio"]),
        "input_ratio": pixels(result["max_side_latent"], result["max_side_pixel"]),
        "train_memory_saving_pct": pct(result["train_memory_ratio"]),
        "train_latency_saving_pct": pct(result["train_latency_ratio"]),
        "train_input_ratio": pixels(result["train_max_side_latent"], result["train_max_side_pixel"]),
    }
