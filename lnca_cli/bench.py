"""`lnca bench`: the paper's claims measured side by side, and lnca against the tools users pick instead.

Five benchmarks, each a function that returns a JSON-ready dict (and a `*_tables` function that
turns it into Rich tables):

- bench_nca: the latent NCA (model.LNCA) against the same NAFCA rule run on pixels
  (model.PixelNCA): same rule, steps, update rate and batch; inference and one training step; peak
  memory and latency per input size, and the largest input each handles within a memory budget.
- bench_speed: the whole `lnca denoise` command on 1, 12 and 50 megapixel photographs, and side
  by side on each: the restore alone with the fast rule and the previous one (previous_rule.py),
  and OpenCV's NL-means.
- bench_train: training iterations per second, fast rule against the previous one.
- bench_quality: PSNR, SSIM and seconds per megapixel of lnca and its peers (peers.py).
- bench_steps: PSNR and time against the number of NCA steps.

How things are measured:

- Latency: `warmup` runs of each model, then `repeats` runs of both interleaved (latent, pixel,
  latent, pixel...), so that a noisy machine slows both alike; the median of each. On a GPU,
  torch.cuda.synchronize() before every clock read.
- Memory on the CPU: the peak resident memory (RSS) that one run adds. With isolate=True (the
  default) every measurement runs in a fresh Python process (`python -m lnca_cli.bench JOB`): it
  builds the model and input, runs a tiny warm-up so that one-time allocations (thread pools,
  oneDNN kernels) are not counted, resets the kernel's high-water mark (/proc/self/clear_refs),
  runs once and reports VmHWM minus the RSS before. RSS counts everything torch really holds,
  allocator slack and oneDNN scratch buffers included, and in a fresh process nothing freed
  earlier can be reused. isolate=False measures in this process after handing freed heap memory
  back to the system (malloc_trim): quicker, for the tests, a little less exact. Without /proc
  (macOS) the process's ru_maxrss is used, which also counts the warm-up.
- Memory on a GPU: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus what
  was allocated before the run.
- Inference memory does not grow with the number of steps (each step's activations are freed
  before the next; a test checks it), so it is measured at MEMORY_STEPS steps to save time; a
  training step keeps every step's activations for backpropagation, so it is measured at its full
  step count.
- Timing and memory do not depend on the weights, so bench_nca uses randomly initialised models
  of the shipped configuration (PRESETS["wide-dw"]); quality and steps need trained weights.

The restore path never imports this module.
"""
from __future__ import annotations

import ctypes
import datetime
import gc
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from rich.table import Table

from lnca_cli import __version__
from lnca_cli.degrade import MASK_NOISE_STD, motion_blur_kernel, parse_degradation
from lnca_cli.devices import cpu_has_bf16, libc_call, release_freed_memory, resolve_device, resolve_precision
from lnca_cli.engine import restore_tensor
from lnca_cli.evaluate import evaluate, image_files, score_image
from lnca_cli.hub import WeightsError, find_model, load_model, load_weights, save_weights
from lnca_cli.images import ImageMeta, read_image, write_image
from lnca_cli.metrics import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW
from lnca_cli.model import LNCA, PRESETS, LNCAConfig, PixelNCA
from lnca_cli.peers import OPENCV_STRENGTH, PEERS, Peer, available, version
from lnca_cli.plot import line_plot, stack_plots

Note = Callable[[str], None]
MIB = 2**20
MEMORY_STEPS = 3  # inference memory is the same at any step count (see the module doc)
LATENT_PRESET = "wide-dw"  # the shipped models' configuration
PAPER = {"memory_saving_pct": 94.0, "latency_saving_pct": 80.0, "input_ratio": 16.0}
QUALITY_DEGRADATIONS = ("gaussian:15", "gaussian:25", "gaussian:50", "masked:0.5", "motion:7", "motion:15")
STEP_COUNTS = (8, 16, 32, 64, 128)
SPEED_MEGAPIXELS = (1.0, 12.0, 50.0)
TASK_OF = {"gaussian": "denoise", "poisson": "denoise", "masked": "denoise-masked", "motion": "deblur",
           "defocus": "deblur"}


def _quiet(message: str) -> None:
    pass


def set_threads(threads: int) -> None:
    """CPU threads for torch here and in the worker processes (which inherit OMP_NUM_THREADS)."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


def choose_peers(names: str | None) -> tuple[Peer, ...]:
    """The peers named in a comma-separated list (all of them for None); an unknown name is a ValueError."""
    if names is None:
        return PEERS
    known = {peer.name: peer for peer in PEERS}
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)}; expected some of {', '.join(known)}")
    return tuple(known[name] for name in chosen)


# ---------------------------------------------------------------- the machine


def machine_info(device: str = "cpu") -> dict:
    """What the figures were measured on: hardware, versions, threads, date, and the command."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    torch_device = resolve_device(device)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "lnca " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "lnca" else " ".join(sys.argv),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lnca": __version__,
        "peers": {peer.package: version(peer) for peer in PEERS},
    }


# ---------------------------------------------------------------- memory


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            match = re.search(rf"^{key}:\s+(\d+) kB", status.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux 4.0+); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _exact_malloc() -> None:
    """Make glibc map every block of 64 KiB or more on its own and unmap it when freed.

    By default glibc keeps freed large blocks for reuse and moves its threshold as it goes, so the
    same run can show a peak RSS 40% apart from one time to the next; with a fixed threshold RSS
    follows what torch really holds within a few percent. It slows allocation a little, which is
    why memory and time are never measured in the same run.
    """
    libc_call("mallopt", -4, 65536)  # M_MMAP_MAX back to glibc's default (the CLI's keep_freed_memory sets 0)
    libc_call("mallopt", -3, 64 * 1024)  # -3: M_MMAP_THRESHOLD


def peak_memory(run: Callable[[], object], device: torch.device) -> int:
    """Bytes that run() adds at its peak: GPU memory allocated on CUDA, resident memory otherwise."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    _exact_malloc()
    gc.collect()
    release_freed_memory()  # so that this run's peak is not hidden by reusing freed memory
    if _reset_peak_rss():
        before = _proc_status_kib("VmRSS")
        run()
        return max(0, _proc_status_kib("VmHWM") - before) * 1024
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * unit


# ---------------------------------------------------------------- latent vs pixel NCA


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
                raise ValueError(f"{name}: give sides of at least 8 pixels, multiples of 4; got {list(sides)}")
        for name in ("train_steps", "batch", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.budget_mib <= 0:
            raise ValueError("warmup must be >= 0 and the memory budget positive")


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def nca_memory_here(kind: str, config: dict, side: int, batch: int, steps: int, mode: str,
                    device: str = "cpu", threads: int | None = None) -> int:
    """Peak bytes of one run of one model, measured in this process (what a worker process runs)."""
    if threads:
        torch.set_num_threads(threads)
    torch_device = torch.device(device)
    if torch_device.type == "cpu":
        _exact_malloc()  # before anything is allocated, so that every large block is mapped alone
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


def time_pair(runs: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of each run, warmed up, then interleaved so that noise hits all alike."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y = a + b x."""
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    if len(points) < 2 or np.ptp(xs) == 0:
        raise ValueError("a line needs two points with different x")
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope)


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


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


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
        row["memory_ratio"] = _ratio(row["latent_mib"], row["pixel_mib"])
        row["latency_ratio"] = _ratio(row["latent_ms"], row["pixel_ms"])
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


def bench_nca(settings: NCASettings | None = None, note: Note = _quiet) -> dict:
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


# ---------------------------------------------------------------- worker processes


def run_worker(job: dict) -> int | dict:
    """Run a measurement job in a fresh Python process and return what it prints (JSON)."""
    env = dict(os.environ)
    threads = job["args"].get("threads")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-m", "lnca_cli.bench", json.dumps(job)], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no output"]
        raise RuntimeError(f"benchmark worker failed: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def denoise_here(argv: list[str], device: str, threads: int | None = None) -> dict:
    """Run `lnca ARGV` in this (fresh) process as `python -m lnca_cli` would; its time, exit code and peaks.

    The clock starts after torch and lnca_cli are imported, so it covers what the command does:
    loading the model, reading, restoring and writing the image.
    """
    import runpy

    if threads:
        torch.set_num_threads(threads)
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(torch_device)
    baseline = _proc_status_kib("VmRSS")
    sys.argv = ["lnca", *argv]
    start = time.perf_counter()
    try:
        runpy.run_module("lnca_cli", run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    seconds = time.perf_counter() - start
    peak = _proc_status_kib("VmHWM")
    if peak is None:  # no /proc: ru_maxrss, bytes on macOS, KiB elsewhere
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    return {
        "code": code,
        "seconds": seconds,
        "peak_rss_mib": peak / 1024,
        "baseline_rss_mib": baseline / 1024 if baseline is not None else None,
        "gpu_peak_mib": torch.cuda.max_memory_allocated(torch_device) / MIB if torch_device.type == "cuda" else None,
    }


def restore_here(path: str, weights: str, steps: int | None, rule: str, precision: str,
                 threads: int | None = None) -> dict:
    """Seconds of the restore alone (engine.restore_tensor, default tiling) on one photograph, with
    the fast rule or the previous one (previous_rule.py): what the new / old ratio compares."""
    from lnca_cli.devices import keep_freed_memory
    from lnca_cli.previous_rule import PreviousRuleLNCA

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()  # as the CLI does
    model = load_weights(weights)[0]
    model = PreviousRuleLNCA.of(model) if rule == "previous" else model
    pixels = read_image(path)[0]
    restore_tensor(pixels[:, :64, :64], model, steps=steps, device="cpu", precision=precision)  # warm-up
    start = time.perf_counter()
    restore_tensor(pixels, model, steps=steps, device="cpu", precision=precision)
    return {"seconds": time.perf_counter() - start, "steps": steps or model.config.steps,
            "flops_per_cell_step": model.nca.rule.flops_per_cell()}


def opencv_here(path: str, threads: int | None = None) -> dict:
    """Seconds of OpenCV's colour NL-means (the peer a user picks for speed) on one photograph, at the
    settings `lnca bench quality` gives it for sigma 25 (peers.py), decoding not counted."""
    import cv2

    if threads:
        cv2.setNumThreads(threads)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    h = OPENCV_STRENGTH * 25
    cv2.fastNlMeansDenoisingColored(image[:64, :64], None, h, h, 7, 21)  # warm-up
    start = time.perf_counter()
    cv2.fastNlMeansDenoisingColored(image, None, h, h, 7, 21)
    return {"seconds": time.perf_counter() - start}


WORKERS = {"nca-memory": nca_memory_here, "denoise": denoise_here, "restore": restore_here, "opencv": opencv_here}


# ---------------------------------------------------------------- the whole tool: speed and memory


def speed_variants(devices: str = "auto") -> list[tuple[str, str]]:
    """(device, precision) pairs: "auto" is the CPU (fp32, and bf16 where it has it), plus CUDA fp32,
    fp16 and bf16 when a GPU is present."""
    names = ["cpu", "cuda"] if devices == "auto" and torch.cuda.is_available() else \
        ["cpu"] if devices == "auto" else [d.strip() for d in devices.split(",") if d.strip()]
    variants = []
    for name in names:
        device = resolve_device(name)  # raises a one-line error for a device that is not there
        variants.append((str(device), "fp32"))
        if device.type == "cuda":
            variants += [(str(device), "fp16"), (str(device), "bf16")]
        elif cpu_has_bf16():
            variants.append((str(device), "bf16"))
    return variants


def make_photo(path: Path, megapixels: float, source: Path | None = None) -> tuple[int, int]:
    """A JPEG of about `megapixels`: the source photograph resized (bicubic) to that size, at its aspect
    ratio, or, without a source, a smooth random 3:2 picture. Time and memory do not depend on the content."""
    if source is not None:
        pixels = read_image(source)[0]
        pixels = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
    else:
        pixels = torch.rand(3, 8, 12, generator=torch.Generator().manual_seed(0))
    aspect = pixels.shape[2] / pixels.shape[1]
    height = max(4, round(math.sqrt(megapixels * 1e6 / aspect)))
    width = max(4, round(height * aspect))
    resized = F.interpolate(pixels[None], size=(height, width), mode="bicubic", align_corners=False)[0]
    meta = ImageMeta(mode="RGB", format="JPEG", bit_depth=8, alpha=None, exif=None, icc_profile=None,
                     grayscale=False)
    write_image(path, resized.clamp(0, 1), meta, quality=95)
    return width, height


def _speed_model(model: str | None, folder: Path, note: Note) -> tuple[str, str]:
    """(weights file, description): the given model, else the denoise default, else a random one
    of the shipped configuration (time and memory do not depend on the weights)."""
    if model is not None:
        return str(find_model(model)), model
    try:
        return str(find_model("denoise")), "denoise (the default model)"
    except WeightsError:
        note(f"no trained denoise model here: timing a randomly initialised {LATENT_PRESET} model")
        path = folder / f"random-{LATENT_PRESET}.safetensors"
        torch.manual_seed(0)
        save_weights(LNCA(PRESETS[LATENT_PRESET]), path, {"task": "denoise"})
        return str(path), f"random {LATENT_PRESET} (no trained weights; time and memory do not depend on them)"


def bench_speed(megapixels: tuple[float, ...] = SPEED_MEGAPIXELS, model: str | None = None, steps: int | None = None,
                devices: str = "auto", threads: int | None = None, repeats: int = 1, source: str | None = None,
                note: Note = _quiet, previous: bool = True) -> dict:
    """`lnca denoise` on photographs of each size, each run in a fresh process: seconds per megapixel
    (median of `repeats`) and peak memory (process RSS; GPU memory allocated on CUDA)."""
    if not megapixels or min(megapixels) <= 0 or repeats < 1:
        raise ValueError("give positive megapixel sizes and at least one repeat")
    variants = speed_variants(devices)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lnca-bench-") as tmp:
        folder = Path(tmp)
        weights, described = _speed_model(model, folder, note)
        photos = []
        for mp in sorted(megapixels):
            note(f"speed: making a {mp:g} MP photograph")
            path = folder / f"photo-{mp:g}mp.jpg"
            photos.append((path, make_photo(path, mp, Path(source) if source else None)))
        for device, precision in variants:
            for path, (width, height) in photos:
                argv = ["denoise", str(path), "-o", str(folder / "out.jpg"), "--overwrite", "--quiet",
                        "--model", weights, "--device", device, "--precision", precision] + \
                       (["--steps", str(steps)] if steps else []) + (["--threads", str(threads)] if threads else [])
                note(f"speed: lnca denoise {width}x{height} on {device} {precision}")
                runs = [run_worker({"job": "denoise", "args": {"argv": argv, "device": device, "threads": threads}})
                        for _ in range(repeats)]
                failed = [run for run in runs if run["code"] != 0]
                if failed:
                    raise RuntimeError(f"lnca denoise failed on {path.name} ({device} {precision}), exit "
                                       f"{failed[0]['code']}")
                seconds = statistics.median(run["seconds"] for run in runs)
                mp = width * height / 1e6
                rows.append({"method": "lnca denoise", "device": device, "precision": precision, "megapixels": mp,
                             "width": width,
                             "height": height, "seconds": seconds, "seconds_per_mp": seconds / mp,
                             "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
                             "baseline_rss_mib": runs[0]["baseline_rss_mib"],
                             "gpu_peak_mib": runs[0]["gpu_peak_mib"]})
        side_by_side = _side_by_side(photos, weights, steps, threads, previous, note)
    return {"benchmark": "speed", "machine": machine_info("auto"),
            "settings": {"megapixels": list(megapixels), "model": described, "steps": steps or "the model's",
                         "threads": threads or torch.get_num_threads(), "repeats": repeats,
                         "source": source or "a smooth random picture", "tile": "auto",
                         "default_precision": resolve_precision(torch.device("cpu"))},
            "rows": rows, "summary": _speed_summary(rows), "side_by_side": side_by_side}


def _side_by_side(photos: list[tuple[Path, tuple[int, int]]], weights: str, steps: int | None, threads: int | None,
                  previous: bool, note: Note) -> list[dict]:
    """Per photograph, one after the other: the restore alone with the fast rule (fp32 and the default
    precision) and with the previous rule (fp32), and OpenCV's NL-means; the ratios, and the fast
    rule's useful GFLOP/s (the NCA's convs on the image's own cells, halos not counted)."""
    default = resolve_precision(torch.device("cpu"))
    opencv = next(peer for peer in PEERS if peer.name == "opencv-nlm")
    rows = []
    for path, (width, height) in photos:
        mp = width * height / 1e6
        row: dict = {"megapixels": mp, "width": width, "height": height}
        for key, rule, precision in (("fast_fp32", "fast", "fp32"), ("fast_default", "fast", default),
                                     *((("previous_fp32", "previous", "fp32"),) if previous else ())):
            note(f"speed: the restore alone, {rule} rule, {precision}, {width}x{height}")
            run = run_worker({"job": "restore", "args": {"path": str(path), "weights": weights, "steps": steps,
                                                         "rule": rule, "precision": precision, "threads": threads}})
            row[f"{key}_seconds"] = run["seconds"]
            cells = math.ceil(height / 4) * math.ceil(width / 4)
            row[f"{key}_gflops"] = run["steps"] * run["flops_per_cell_step"] * cells / run["seconds"] / 1e9
        row["floor_gflop_per_step_per_mp"] = run["flops_per_cell_step"] * 1e6 / 16 / 1e9
        if available(opencv):
            note(f"speed: OpenCV NL-means, {width}x{height}")
            row["opencv_seconds"] = run_worker({"job": "opencv", "args": {"path": str(path), "threads": threads}})[
                "seconds"]
        row["new_over_old"] = _ratio(row["fast_fp32_seconds"], row.get("previous_fp32_seconds"))
        row["lnca_over_opencv"] = _ratio(row["fast_default_seconds"], row.get("opencv_seconds"))
        rows.append(row)
    return rows


def _speed_summary(rows: list[dict]) -> list[dict]:
    """Per device: the fitted seconds per megapixel (slope), and how much the peak grows from the smallest
    to the largest image (1.0 = flat)."""
    summary = []
    for device, precision in dict.fromkeys((r["device"], r["precision"]) for r in rows):
        mine = [r for r in rows if (r["device"], r["precision"]) == (device, precision)]
        memory = "gpu_peak_mib" if mine[0]["gpu_peak_mib"] is not None else "peak_rss_mib"
        slope = fit_line([(r["megapixels"], r["seconds"]) for r in mine])[1] if len(mine) > 1 else None
        summary.append({"device": device, "precision": precision, "fitted_seconds_per_mp": slope,
                        "memory": memory, "memory_growth": mine[-1][memory] / mine[0][memory]})
    return summary


# ---------------------------------------------------------------- quality against peers


def task_of(degradation: str) -> str:
    """The lnca task (and so default model) for a degradation spec."""
    parse_degradation(degradation)  # a one-line ValueError for a bad spec
    return TASK_OF[degradation.split(":")[0]]


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
    return "blur" if task_of(spec) == "deblur" else "noise"


def bench_quality(data: str | Path, models: dict[str, LNCA], degradations: tuple[str, ...] = QUALITY_DEGRADATIONS,
                  peers: tuple[Peer, ...] = PEERS, steps: int | None = None, device: str = "cpu",
                  limit: int | None = None, seed: int = 0, note: Note = _quiet) -> dict:
    """One table per degradation: the degraded input, lnca (models: task -> model) and each peer that
    applies, on the same degraded images; mean PSNR/SSIM and seconds per megapixel."""
    paths = image_files(data)[:limit]
    torch_device = resolve_device(device)
    tables = []
    for spec in degradations:
        task = task_of(spec)
        model = models[task]
        methods: dict[str, Callable] = {"lnca": lambda d, sigma, kernel, i: restore_tensor(
            d, model, steps=steps, device=torch_device, seed=seed + i)}
        rows = {"input": _row("input", "the degraded image itself"),
                "lnca": _row("lnca", f"model {getattr(model, 'info', {}).get('name', 'unnamed')}, "
                                     f"{steps or model.config.steps} steps, blind")}
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
            "settings": {"steps": steps or "the model's", "device": str(torch_device), "limit": limit, "seed": seed},
            "protocol": _protocol(), "tables": tables}


def _row(method: str, settings: str, version_: str | None = None) -> dict:
    return {"method": method, "settings": settings, "version": version_, "status": "ok",
            "psnr": 0.0, "ssim": 0.0, "seconds": 0.0, "count": 0}


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
    row["seconds"] += score.seconds
    row["count"] += 1


def _mean(row: dict, megapixels: float) -> dict:
    count = row.pop("count")
    seconds = row.pop("seconds")
    if row["status"] != "ok" or not count:
        return {**row, "psnr": None, "ssim": None, "seconds_per_mp": None}
    return {**row, "psnr": row["psnr"] / count, "ssim": row["ssim"] / count,
            "seconds_per_mp": None if row["method"] == "input" else seconds / megapixels}


def _protocol() -> dict:
    return {
        "degradation": "as `lnca eval`: image i degraded with a generator seeded seed + i; Gaussian noise "
                       "unclipped; a motion blur's angle drawn from that generator",
        "same_inputs": "every method restores the same degraded float image",
        "peers_given": "noise peers get the true sigma (masked noise: sqrt(p) x 0.2, the corruption's std); "
                       "blur peers get the true kernel; lnca gets neither (blind)",
        "scores": "PSNR and SSIM on 8-bit images (clipped and rounded), data range 1, RGB",
        "ssim": {"window": "gaussian", "window_size": SSIM_WINDOW, "sigma": SSIM_SIGMA, "k1": SSIM_K1,
                 "k2": SSIM_K2, "channels": "each separately, averaged", "covariance": "population"},
        "seconds_per_mp": "wall time of the restore alone (not reading or scoring) over the images' megapixels, "
                          "after a warm-up on a 48x48 corner",
    }


# ---------------------------------------------------------------- steps vs quality vs time


def bench_steps(data: str | Path, model: LNCA, degradation: str = "gaussian:25",
                step_counts: tuple[int, ...] = STEP_COUNTS, device: str = "cpu", limit: int | None = None,
                seed: int = 0, note: Note = _quiet) -> dict:
    """PSNR, SSIM and seconds per megapixel at each step count, on the same degraded images (lnca eval)."""
    if not step_counts or min(step_counts) < 1:
        raise ValueError(f"step counts must be at least 1, got {list(step_counts)}")
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
            "model": getattr(model, "info", {}).get("name", "unnamed"), "images": len(paths),
            "megapixels": megapixels, "rows": rows}


# ---------------------------------------------------------------- all of them


# ---------------------------------------------------------------- training steps: fast rule against the previous one


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
            raise ValueError("batch, steps and repeats must be at least 1, warmup at least 0")
        if self.crop < 8 or self.crop % 4:
            raise ValueError(f"crop must be a multiple of 4 of at least 8, got {self.crop}")


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


def bench_train(settings: TrainSettings | None = None, note: Note = _quiet) -> dict:
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


def train_tables(result: dict) -> list[Table]:
    s = result["settings"]
    table = Table(title=f"Training iterations: fast rule vs previous, batch {s['batch']} of {s['crop']}x{s['crop']}, "
                        f"{s['steps']} NCA steps, {result['machine'].get('torch_threads', '?')} threads")
    for header in ("phase", "fast it/s", "previous it/s", "speed-up"):
        table.add_column(header, justify="right")
    for r in result["rows"]:
        table.add_row({"nca": "2: NCA", "e2e": "3: end to end"}[r["mode"]], _num(r["fast_per_s"], 2),
                      _num(r["previous_per_s"], 2), _num(r["speedup"], 2))
    return [table]


def bench_all(parts: dict[str, Callable[[], dict]], device: str = "cpu") -> dict:
    """Run each part (name -> a call of one bench_* function) in turn; each result carries the
    seconds that part took, so that how long every benchmark takes on a machine is measured too."""
    result = {"benchmark": "all", "machine": machine_info(device)}
    for name, run in parts.items():
        start = time.perf_counter()
        result[name] = run()
        result[name]["seconds"] = time.perf_counter() - start
    return result


# ---------------------------------------------------------------- tables and plots


def _num(value: float | None, places: int = 2, missing: str = "-") -> str:
    return missing if value is None else f"{value:.{places}f}"


def nca_tables(result: dict) -> list[Table]:
    tables = []
    for mode, title in (("inference", f"inference, {result['settings']['steps']} steps"),
                        ("train", f"one training step, {result['settings']['train_steps']} steps")):
        table = Table(title=f"Latent NCA vs pixel NCA: {title}, batch {result['settings']['batch']}")
        for header in ("input", "latent MiB", "pixel MiB", "memory ratio", "latent ms", "pixel ms", "latency ratio"):
            table.add_column(header, justify="right")
        for row in result[mode]:
            over = "over budget"
            table.add_row(f"{row['side']}x{row['side']}", _num(row["latent_mib"], 1, over),
                          _num(row["pixel_mib"], 1, over), _num(row["memory_ratio"], 3), _num(row["latent_ms"], 1),
                          _num(row["pixel_ms"], 1), _num(row["latency_ratio"], 3))
        tables.append(table)
    summary = Table(title=f"In the paper's terms (memory budget {result['settings']['budget_mib']:g} MiB)")
    for header in ("", "inference", "training step", "paper"):
        summary.add_column(header, justify="right")

    def side(latent, pixel):
        return f"{latent} vs {pixel} px" if latent else "-"

    summary.add_row("memory saved, %", _num(result["memory_saving_pct"], 1), _num(result["train_memory_saving_pct"], 1),
                    "~94")
    summary.add_row("latency saved, %", _num(result["latency_saving_pct"], 1),
                    _num(result["train_latency_saving_pct"], 1), "~80")
    summary.add_row("largest input side", side(result["max_side_latent"], result["max_side_pixel"]),
                    side(result["train_max_side_latent"], result["train_max_side_pixel"]), "")
    summary.add_row("times more pixels", _num(result["input_ratio"], 1), _num(result["train_input_ratio"], 1), "16")
    tables.append(summary)
    return tables


def speed_tables(result: dict) -> list[Table]:
    table = Table(title=f"lnca denoise, {result['settings']['model']}, steps: {result['settings']['steps']}, "
                        f"{result['settings']['threads']} CPU threads")
    for header in ("device", "precision", "image", "MP", "seconds", "s/MP", "peak RSS MiB", "GPU peak MiB"):
        table.add_column(header, justify="right")
    for r in result["rows"]:
        table.add_row(r["device"], r["precision"], f"{r['width']}x{r['height']}", _num(r["megapixels"], 1),
                      _num(r["seconds"], 1), _num(r["seconds_per_mp"], 2), _num(r["peak_rss_mib"], 0),
                      _num(r["gpu_peak_mib"], 0))
    return [table, side_by_side_table(result)] if result.get("side_by_side") else [table]


def side_by_side_table(result: dict) -> Table:
    """The restore alone, one method after the other on each photograph: fast rule against the previous
    one, and lnca (default precision) against OpenCV's NL-means."""
    default = result["settings"].get("default_precision", "fp32")
    table = Table(title=f"The restore alone, side by side (s/MP; GFLOP/s of the NCA's convs, floor "
                        f"{result['side_by_side'][0]['floor_gflop_per_step_per_mp']:.1f} GFLOP per step per MP)")
    for header in ("MP", "previous fp32", "fast fp32", f"fast {default}", "OpenCV NLM", "new / old",
                   "lnca / opencv", "GFLOP/s fp32", f"GFLOP/s {default}"):
        table.add_column(header, justify="right")
    for r in result["side_by_side"]:
        mp = r["megapixels"]

        def per_mp(key):
            return _num(r[key] / mp if r.get(key) is not None else None, 2)

        table.add_row(_num(mp, 1), per_mp("previous_fp32_seconds"), per_mp("fast_fp32_seconds"),
                      per_mp("fast_default_seconds"), per_mp("opencv_seconds"), _num(r["new_over_old"], 3),
                      _num(r["lnca_over_opencv"], 3), _num(r["fast_fp32_gflops"], 0),
                      _num(r["fast_default_gflops"], 0))
    return table


def quality_tables(result: dict) -> list[Table]:
    tables = []
    for part in result["tables"]:
        table = Table(title=f"{part['degradation']}: {part['images']} images, {part['megapixels']:.2f} MP")
        for header in ("method", "PSNR dB", "SSIM", "s/MP", "status"):
            table.add_column(header, justify="left" if header in ("method", "status") else "right")
        for r in part["rows"]:
            table.add_row(r["method"], _num(r["psnr"], 2), _num(r["ssim"], 4), _num(r["seconds_per_mp"], 2),
                          r["status"])
        tables.append(table)
    return [*tables, method_table(result)]


def method_table(result: dict) -> Table:
    """Each method of the quality tables once (lnca once per model): its settings and version."""
    table = Table(title="Methods: settings and versions")
    for header in ("method", "version", "settings"):
        table.add_column(header)
    rows = {(r["method"], r["settings"]): r
            for part in result["tables"] for r in part["rows"] if r["method"] != "input"}
    for r in rows.values():
        table.add_row(r["method"], r.get("version") or ("lnca " + __version__ if r["method"] == "lnca" else "-"),
                      r["settings"])
    return table


def steps_tables(result: dict) -> list[Table]:
    table = Table(title=f"Steps vs quality vs time: {result['model']} on {result['degradation']}, "
                        f"{result['images']} images")
    for header in ("steps", "PSNR dB", "SSIM", "s/MP"):
        table.add_column(header, justify="right")
    for r in result["rows"]:
        table.add_row(str(r["steps"]), _num(r["psnr"], 2), _num(r["ssim"], 4), _num(r["seconds_per_mp"], 2))
    return [table]


def _series(rows: list[dict], x: str, ys: dict[str, str]) -> dict[str, list[tuple[float, float]]]:
    return {name: [(row[x], row[key]) for row in rows if row.get(key) is not None] for name, key in ys.items()}


def nca_plot(result: dict) -> Image.Image:
    rows = result["inference"]
    return stack_plots([
        line_plot(_series(rows, "side", {"latent NCA": "latent_mib", "pixel NCA": "pixel_mib"}),
                  "Inference peak memory", "input side (px)", "MiB", log_y=True),
        line_plot(_series(rows, "side", {"latent NCA": "latent_ms", "pixel NCA": "pixel_ms"}),
                  "Inference latency", "input side (px)", "ms", log_y=True),
    ])


def speed_plot(result: dict) -> Image.Image:
    variants = dict.fromkeys((r["device"], r["precision"]) for r in result["rows"])
    seconds, memory = {}, {}
    for device, precision in variants:
        rows = [r for r in result["rows"] if (r["device"], r["precision"]) == (device, precision)]
        key = "gpu_peak_mib" if rows[0]["gpu_peak_mib"] is not None else "peak_rss_mib"
        seconds[f"{device} {precision}"] = [(r["megapixels"], r["seconds"]) for r in rows]
        memory[f"{device} {precision}"] = [(r["megapixels"], r[key]) for r in rows]
    return stack_plots([line_plot(seconds, "lnca denoise: time", "megapixels", "seconds"),
                        line_plot(memory, "lnca denoise: peak memory (RSS; GPU allocated on CUDA)", "megapixels",
                                  "MiB")])


def steps_plot(result: dict) -> Image.Image:
    rows = result["rows"]
    return stack_plots([line_plot(_series(rows, "steps", {"PSNR": "psnr"}), "Steps vs PSNR", "steps", "dB"),
                        line_plot(_series(rows, "steps", {"seconds per MP": "seconds_per_mp"}), "Steps vs time",
                                  "steps", "s/MP")])


TABLES = {"nca": nca_tables, "speed": speed_tables, "train": train_tables, "quality": quality_tables,
          "steps": steps_tables}
PLOTS = {"nca": nca_plot, "speed": speed_plot, "steps": steps_plot}


def tables_of(result: dict) -> list[Table]:
    """Tables for one benchmark's result, or for every part of `lnca bench all`'s."""
    if result.get("benchmark") == "all":
        return [table for name in TABLES if name in result for table in TABLES[name](result[name])]
    return TABLES[result["benchmark"]](result)


def markdown_of(tables: list[Table]) -> str:
    """The tables as Markdown (a bold title, then a pipe table), for docs/BENCHMARKS.md."""
    blocks = []
    for table in tables:
        lines = [f"**{table.title}**", "", "| " + " | ".join(str(c.header) for c in table.columns) + " |",
                 "|" + "|".join("---" for _ in table.columns) + "|"]
        lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |"
                  for row in zip(*(column.cells for column in table.columns))]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def plot_of(result: dict) -> Image.Image | None:
    """The plot for one benchmark's result (None for quality), or all of them stacked for `all`."""
    if result.get("benchmark") == "all":
        return stack_plots([PLOTS[name](result[name]) for name in PLOTS if name in result])
    plot = PLOTS.get(result["benchmark"])
    return plot(result) if plot else None


if __name__ == "__main__":  # a worker process: python -m lnca_cli.bench '{"job": ..., "args": {...}}'
    job = json.loads(sys.argv[1])
    print(json.dumps(WORKERS[job["job"]](**job["args"])))
