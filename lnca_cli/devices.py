"""Where a restore runs: the device, its precision, the CPU threads, and the C library's memory.

The edges of the engine: nothing here knows the model. engine.py asks these functions what to run
on, and the CLI calls set_threads and keep_freed_memory once per process.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(Exception):
    """The asked device is not available or not usable for the asked precision."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; any other name must be available."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise DeviceError(f"unknown device '{name}'; expected one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' asked for, but no CUDA GPU is available (try --device cpu)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' asked for, but Apple MPS is not available (try --device cpu)")
    if index and int(index) >= torch.cuda.device_count():
        raise DeviceError(f"device '{name}' asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    return torch.device(name)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), as oneDNN sees it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, name: str = "auto", supports_half: bool = True) -> str:
    """What `name` means on `device`: auto is bf16 on a CPU that has it (matmuls and convs in bf16,
    norms and the cells' residual stream in fp32; measured faster at the same PSNR, see
    docs/BENCHMARKS.md), fp32 elsewhere. Raises DeviceError for a precision the device lacks."""
    if name not in PRECISIONS:
        raise DeviceError(f"unknown precision '{name}'; expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if supports_half and device.type == "cpu" and cpu_has_bf16() else "fp32"
    if name != "fp32" and not supports_half:
        raise DeviceError(f"this model runs in fp32 only, not {name}")
    if name == "fp16" and device.type not in ("cuda", "mps"):
        raise DeviceError("fp16 (--half) needs a GPU (cuda or mps); on the CPU use --precision bf16 or fp32")
    if name == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise DeviceError("this CPU has no bf16 arithmetic (AVX512-BF16 or AMX); use --precision fp32")
    return name


def autocast(device: torch.device, name: str = "auto", supports_half: bool = True):
    """The autocast context for a precision (see resolve_precision)."""
    resolved = resolve_precision(device, name, supports_half)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if resolved == "bf16" else torch.float16)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, and a container's CPU quota (cgroup v2)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return count


PHYSICAL_CORES = torch.get_num_threads()  # torch's own count, before anyone changes it (or OMP_NUM_THREADS)


def default_threads() -> int:
    """The cores free for lnca: torch's count of physical cores, within usable_cpus(), less those
    that other processes keep busy (the 1-minute load average). On a busy machine a thread more
    than the free cores makes every step wait for a descheduled one: slower, not faster
    (docs/BENCHMARKS.md section 0)."""
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(PHYSICAL_CORES, usable_cpus()) - busy)


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads (None: default_threads()); returns the count. Never more than usable_cpus()."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    count = default_threads() if threads is None else min(threads, usable_cpus())
    torch.set_num_threads(count)
    return count


#: Below this many latent cells a step is too small to share between threads: one is fastest.
SMALL_GRID_CELLS = 1024


@contextlib.contextmanager
def threads_for(cells: int, device: torch.device):
    """One CPU thread for a tiny image (a 64x64 photo is 256 cells), torch's setting otherwise."""
    saved = torch.get_num_threads()
    if device.type == "cpu" and cells < SMALL_GRID_CELLS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def libc_call(name: str, *args: int) -> None:
    """Call a glibc function by name; nothing where the C library is not glibc."""
    try:
        getattr(ctypes.CDLL("libc.so.6"), name)(*args)
    except (OSError, AttributeError):
        pass


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse rather than give it back to the system at once.

    Each NCA step on a CPU tile allocates and frees tensors of tens of MB. glibc serves blocks that
    large with fresh mmaps and unmaps them when freed, so every step page-faults them in again: as
    much system time as compute. Served from the heap and kept (up to 1 GiB of free heap), they are
    reused (what that buys: docs/BENCHMARKS.md). Process-wide, so
    the CLI's restore and train commands call it; library users may call it too.
    """
    libc_call("mallopt", -4, 0)  # M_MMAP_MAX: large blocks from the heap too
    libc_call("mallopt", -1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere).

    restore_tensor calls it after each tile: what a tile freed is kept (keep_freed_memory) for
    that tile's steps to reuse, but left over it would pile up between the long-lived image
    buffers, tile after tile. Trimming once per tile keeps the peak to the image buffers plus one
    tile's working memory (docs/BENCHMARKS.md has the figures).
    """
    libc_call("malloc_trim", 0)
