"""What every benchmark shares: the machine, CPU threads, peak memory, timing, worker processes, `bench all`.

How things are measured:

- Latency (time_pair): `warmup` runs of each compared model, then `repeats` runs of all of them
  interleaved (latent, pixel, latent, pixel...), so that a noisy machine slows both alike; the
  median of each. On a GPU, torch.cuda.synchronize() before every clock read.
- Memory on the CPU (peak_memory): the peak resident memory (RSS) that one run adds: the kernel's
  high-water mark is reset (/proc/self/clear_refs), the run runs once, and VmHWM minus the RSS
  before is reported. RSS counts everything torch really holds, allocator slack and oneDNN scratch
  buffers included. Without /proc (macOS) the process's ru_maxrss is used, which also counts
  whatever ran before.
- Memory on a GPU: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus what
  was allocated before the run.
- Worker processes (run_worker): a measurement that must not see what this process did before runs
  in a fresh Python process, `python -m lnca_cli.bench '{"job": ..., "args": {...}}'` (__main__.py),
  which prints its result as one JSON line.
"""
from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lnca_cli import __version__
from lnca_cli.bench.peers import PEERS, version
from lnca_cli.devices import libc_call, release_freed_memory, resolve_device

Note = Callable[[str], None]
MIB = 2**20
LATENT_PRESET = "wide-dw"  # the shipped models' configuration


def quiet(message: str) -> None:
    """The default note: the benchmarks say nothing while they run unless given one."""


def set_threads(threads: int) -> None:
    """CPU threads for torch here and in the worker processes (which inherit OMP_NUM_THREADS)."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


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


def proc_status_kib(key: str) -> int | None:
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


def exact_malloc() -> None:
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
    exact_malloc()
    gc.collect()
    release_freed_memory()  # so that this run's peak is not hidden by reusing freed memory
    if _reset_peak_rss():
        before = proc_status_kib("VmRSS")
        run()
        return max(0, proc_status_kib("VmHWM") - before) * 1024
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * unit


# ---------------------------------------------------------------- time


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def ratio_of(a: float | None, b: float | None) -> float | None:
    """a / b, or None where either is missing (or b is 0)."""
    return a / b if a is not None and b else None


# ---------------------------------------------------------------- worker processes and bench all


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


def bench_all(parts: dict[str, Callable[[], dict]], device: str = "cpu") -> dict:
    """Run each part (name -> a call of one bench_* function) in turn; each result carries the
    seconds that part took, so that how long every benchmark takes on a machine is measured too."""
    result = {"benchmark": "all", "machine": machine_info(device)}
    for name, run in parts.items():
        start = time.perf_counter()
        result[name] = run()
        result[name]["seconds"] = time.perf_counter() - start
    return result
