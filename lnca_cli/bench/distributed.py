"""`lnca bench ray`: images per second of `lnca denoise` on one folder, the local engine against the
Ray engine with 1 and 2 (or more) workers, in one run; and what Ray costs: the start-up of a local
instance, the start of a job, and the overhead of each file.

What each figure covers:

- local, T threads: restore_files on the folder in this process, the model loaded (what `lnca
  denoise` spends once it has started).
- ray, N workers: restore_files_on_ray on the same folder (each worker one CPU thread): the job
  starts its worker actors (a process each, which imports torch and loads the model), shares the
  files out and gathers the results, so the start of a job and the overhead of each file are in it.
- The fixed costs, measured apart on tiny images (see _overhead): ray.init() of a local instance
  (when this run starts one), the start of a job, and the overhead of each file.

Each variant writes a fresh output folder; every Ray run's outputs are compared byte for byte with
the local engine's. Runs are interleaved (local, ray 1, ray 2, local, ...) and the median of each is
reported, so that a noisy machine slows all alike.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from lnca_cli.api import RestoreSettings, plan_jobs, prepare, restore_files
from lnca_cli.bench.harness import Note, machine_info, quiet
from lnca_cli.bench.speed import make_photo, timing_model
from lnca_cli.devices import set_threads
from lnca_cli.distributed import Workers, import_ray, ray_connected, restore_files_on_ray
from lnca_cli.errors import SettingsError

TINY_SIDE, TINY_FILES = 16, 96  # the overhead's images: so small that their restore takes no time
BURST_SECONDS = 0.005  # the results of one block come together, within this


@dataclass(frozen=True)
class RayBenchSettings:
    images: int = 24
    megapixels: float = 0.25
    workers: tuple[int, ...] = (1, 2)
    repeats: int = 1
    model: str | None = None  # None: the denoise model, else a random one (timing only)
    steps: int | None = None
    address: str | None = None  # None: a local Ray instance on this machine's cores

    def check(self) -> None:
        if self.images < 1 or self.megapixels <= 0 or self.repeats < 1 or not self.workers or min(self.workers) < 1:
            raise SettingsError("give at least one image of a positive size, one repeat and worker counts of 1 or more")


def bench_ray(settings: RayBenchSettings = RayBenchSettings(), note: Note = quiet) -> dict:
    """The table of engines (seconds, images per second, speed-up, identical outputs) and Ray's fixed costs."""
    settings.check()
    ray = import_ray()
    started_here = not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="lnca-bench-ray-") as tmp:
        folder = Path(tmp)
        weights, described = timing_model(settings.model, folder, note)
        restore = RestoreSettings(steps=settings.steps)
        model = prepare("denoise", weights, restore)
        note(f"ray: making {settings.images} photographs of {settings.megapixels:g} MP")
        photos = _folder(folder / "photos", settings.images, settings.megapixels)
        start = time.perf_counter()
        with ray_connected(settings.address) as ray:
            startup = time.perf_counter() - start if started_here else None
            cpus = int(ray.cluster_resources().get("CPU", 0))
            rows = _rows(_variants(settings.workers, model, restore, settings.address), photos, folder / "out",
                         settings.repeats, note)
            overhead = _overhead(model, restore, settings.address, folder, note)
    width, height = photos[1]
    return {"benchmark": "ray", "machine": machine_info("cpu"),
            "settings": {**asdict(settings), "workers": list(settings.workers), "model": described,
                         "steps": settings.steps or "the model's", "width": width, "height": height},
            "ray": {"version": ray.__version__, "cluster_cpus": cpus, "startup_s": startup,
                    "address": settings.address or "a local instance"},
            "rows": rows, "overhead": overhead}


def _folder(path: Path, count: int, megapixels: float) -> tuple[Path, tuple[int, int]]:
    """A folder of `count` JPEGs of about `megapixels` (one picture: time does not depend on the content)."""
    path.mkdir(parents=True)
    size = make_photo(path / "0000.jpg", megapixels)
    for i in range(1, count):
        (path / f"{i:04}.jpg").write_bytes((path / "0000.jpg").read_bytes())
    return path, size


Run = Callable[[list], list]  # jobs -> their results


def _local(model, restore: RestoreSettings, threads: int) -> Run:
    def run(jobs):
        set_threads(threads)
        return restore_files(jobs, model, restore)
    return run


def _on_ray(model, restore: RestoreSettings, count: int, address: str | None, on_result=None) -> Run:
    return lambda jobs: restore_files_on_ray(jobs, model, restore, Workers(count, 1), address, on_result)


def _variants(workers: tuple[int, ...], model, restore: RestoreSettings, address: str | None) -> dict[str, dict]:
    """name: {engine, workers, threads, run}: the local engine at 1 thread and at as many threads as the
    most workers, then Ray with each count of workers (a thread each)."""
    variants = {f"local, {t} thread{'s' if t > 1 else ''}": {"engine": "local", "workers": None, "threads": t,
                                                             "run": _local(model, restore, t)}
                for t in sorted({1, max(workers)})}
    variants.update({f"ray, {n} worker{'s' if n > 1 else ''}": {"engine": "ray", "workers": n, "threads": 1,
                                                                "run": _on_ray(model, restore, n, address)}
                     for n in sorted(set(workers))})
    return variants


def _timed(run: Run, photos: Path, out: Path) -> float:
    """Seconds to restore every photo into a fresh folder `out`; a file that fails fails the benchmark."""
    jobs = plan_jobs([str(photos)], "denoise", str(out))
    start = time.perf_counter()
    results = run(jobs)
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.status != "done"]
    if failed or len(results) != len(jobs):
        raise RuntimeError(f"lnca bench ray: {len(failed) or len(jobs) - len(results)} files not restored"
                           + (f" ({failed[0].error})" if failed else ""))
    return seconds


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def _rows(variants: dict[str, dict], photos: tuple[Path, tuple[int, int]], out: Path, repeats: int,
          note: Note) -> list[dict]:
    """Each variant `repeats` times, interleaved; the median, images per second, the speed-up on the
    local engine at 1 thread, and whether its outputs are the local engine's, byte for byte."""
    folder, _ = photos
    count = sum(1 for _ in folder.iterdir())
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        for name, variant in variants.items():
            note(f"ray: {name}, run {repeat + 1} of {repeats}")
            seconds[name].append(_timed(variant["run"], folder, out / f"{repeat}-{len(seconds[name])}-{name}"))
    reference = out / f"0-0-{next(iter(variants))}"
    base = statistics.median(seconds[next(iter(variants))])
    rows = []
    for name, variant in variants.items():
        median = statistics.median(seconds[name])
        rows.append({"variant": name, "engine": variant["engine"], "workers": variant["workers"],
                     "threads": variant["threads"], "images": count, "seconds": median,
                     "images_per_s": count / median, "speedup": base / median,
                     "identical": _same_files(reference, out / f"0-0-{name}")})
    return rows


def _steady_seconds_per_file(arrivals: list[float]) -> float:
    """Seconds per file once a job runs steadily, from the times its results arrived: they come a block at
    a time (a burst), and the first ones late, after the job's start; so, from the middle burst on, the
    time to the last burst over the files that came between."""
    bursts: list[list[float]] = []  # [time of the first result, results]
    for t in arrivals:
        if bursts and t - bursts[-1][0] < BURST_SECONDS:
            bursts[-1][1] += 1
        else:
            bursts.append([t, 1])
    middle = len(bursts) // 2
    files = sum(count for _, count in bursts[middle:-1])
    return (bursts[-1][0] - bursts[middle][0]) / files if files else float("nan")


def _overhead(model, restore: RestoreSettings, address: str | None, folder: Path, note: Note) -> dict:
    """Ray's costs on tiny images, whose restore takes no time: the start of a job, what Ray with 1 worker
    takes more than the local engine at 1 thread on one image; the overhead of a file, Ray's time per
    file in the second half of a job of many (_steady_seconds_per_file), less the local engine's."""
    local = _local(model, restore, 1)
    one, _ = _folder(folder / "tiny-1", 1, TINY_SIDE**2 / 1e6)
    many, _ = _folder(folder / "tiny-many", TINY_FILES, TINY_SIDE**2 / 1e6)
    note("ray: the start of a job, on 1 tiny image")
    job_start = _timed(_on_ray(model, restore, 1, address), one, folder / "tiny-1-ray") - \
        _timed(local, one, folder / "tiny-1-local")
    note(f"ray: the overhead of a file, on {TINY_FILES} tiny images")
    arrivals: list[float] = []
    _timed(_on_ray(model, restore, 1, address, lambda result: arrivals.append(time.perf_counter())), many,
           folder / "tiny-many-ray")
    ray_per_file = _steady_seconds_per_file(arrivals)
    local_per_file = _timed(local, many, folder / "tiny-many-local") / TINY_FILES
    return {"job_start_s": job_start, "ray_per_file_ms": 1000 * ray_per_file, "local_per_file_ms": 1000 * local_per_file,
            "per_file_ms": 1000 * (ray_per_file - local_per_file), "tiny_side": TINY_SIDE, "tiny_files": TINY_FILES}
