"""The Ray engine (`--engine ray`) and restore_dataset(): restoring beyond one machine with Ray Data.

Ray Data's pattern for batch inference: the planned jobs are a dataset of (input, output) rows;
`map_batches` runs them on a pool of worker actors, a callable class that loads the model once per
actor; each worker reads, restores and writes its own files with api.restore_job, so the outputs,
the skip and overwrite rules, the atomic writes and the metadata are the local engine's; the
results come back to this process (the driver) in the jobs' order, for the per-file lines, the
summary and the exit code.

Ray is imported here only, and only when asked: the rest of lnca never needs it. On a cluster every
node needs lnca, the model by the same name (or the same file at the same path), and the inputs and
outputs at the paths this machine sees them at (a shared file system): workers run in the folder
`lnca` was started in.

A run stops cleanly. A small actor (RunControl), which the workers ask before each file and tell
after it, lets the driver stop the files not yet begun (on Ctrl-C, or a full disk): the files in
hand are finished, the others come back at once as not started, and the job ends as any job does.
It also keeps each file's tries and result: Ray restarts a worker that died and gives it its block
of files again; the files already finished are not redone (their results are kept), and a file that
two workers died on is reported failed rather than tried a third time.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import signal
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from lnca_cli.api import (STDIO, FileResult, Job, RestoreSettings, Stop, backend_for, clean_output_folders, prepare,
                          resolved_paths, restore_job)
from lnca_cli.devices import keep_freed_memory, set_threads, usable_cpus
from lnca_cli.engine import restore
from lnca_cli.errors import LncaError, SettingsError, first_line, printable
from lnca_cli.hub import load_model, sha256_of
from lnca_cli.model import LNCA

RAY_EXTRA = 'pip install "lnca[ray]"'
TRIES = 2  # a file is tried once more after a worker died on it
BLOCKS_PER_WORKER = 16  # blocks of files per worker: the workers' shares of the work even out to within 1/16
GO, STOPPING, GAVE_UP, FINISHED = "go", "stopping", "gave up", "finished"
NOT_STARTED = "not started"  # a row for a file that the run stopped before
CONNECT_SECONDS = 10  # for a cluster's address to take a connection


def import_ray():
    """The ray module, with ray.data; a SettingsError that says how to install them where they are not."""
    try:
        import ray
        import ray.data  # noqa: F401 - the engine's half of Ray, which plain `pip install ray` lacks
    except ImportError:
        raise SettingsError(f"the Ray engine needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


@dataclass(frozen=True)
class Workers:
    """The pool of Ray worker actors; what is None is worked out from the cluster's size (plan_workers)."""

    count: int | None = None  # None: one worker per `threads` CPUs of the cluster, or per `gpus` of its GPUs
    threads: int | None = None  # CPU threads of each, and the CPUs it reserves; None: count's share, else 1
    gpus: float = 0.0  # GPUs each worker reserves (a fraction shares one); 0: the workers run on CPUs


def plan_workers(ray, workers: Workers, spare_cpus: int = 0) -> Workers:
    """`workers` with count and threads worked out from the cluster's CPUs (less `spare_cpus`, which the
    rest of a pipeline needs) and GPUs. A SettingsError for a pool that the cluster cannot hold now:
    Ray would wait for it without end."""
    for value, least, option in ((workers.count, 1, "--workers"), (workers.threads, 1, "--threads"),
                                 (workers.gpus, 0, "--gpus-per-worker")):
        if value is not None and value < least:
            raise SettingsError(f"{option} must be at least {least}, got {value:g}")
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    usable = cpus - spare_cpus
    threads = workers.threads or (max(1, usable // workers.count) if workers.count else 1)
    count = workers.count or max(1, int(gpus // workers.gpus) if workers.gpus else usable // threads)
    if count * threads > usable:
        spare = f", {spare_cpus} of which the dataset's reads and writes need" if spare_cpus else ""
        raise SettingsError(f"{count} workers of {threads} CPU thread{'s' if threads > 1 else ''} need "
                            f"{count * threads} CPUs, but the Ray cluster has {cpus}{spare}; ask for fewer workers "
                            f"or threads")
    if count * workers.gpus > gpus:
        raise SettingsError(f"{count} workers of {workers.gpus:g} GPU need {count * workers.gpus:g} GPUs, but the Ray "
                            f"cluster has {gpus:g}; ask for fewer workers or GPUs each")
    return Workers(count, threads, workers.gpus)


@contextlib.contextmanager
def ray_connected(address: str | None = None) -> Iterator:
    """Ray, connected for the block: as it is where this process is connected already; else joined to
    the cluster at `address` ("auto", "ray://host:port"), or, without one, a local instance on this
    machine's cores, which is shut down after the block."""
    ray = import_ray()
    _quiet_ray_data()
    if address:
        _check_answers(address)
    if ray.is_initialized():
        yield ray
        return
    where = {"address": address} if address else {"num_cpus": usable_cpus(), "include_dashboard": False}
    try:
        ray.init(**where, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError... for an address
        what = f"--ray-address {address}: cannot connect" if address else "cannot start a local Ray instance"
        raise SettingsError(f"{what} ({printable(first_line(exc))})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_answers(address: str) -> None:
    """A SettingsError unless `address` is auto or a HOST:PORT (ray:// or not) that takes a connection:
    for one that does not, ray.init would try again without end."""
    if address == "auto":
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit():
        raise SettingsError(f"--ray-address must be auto, HOST:PORT or ray://HOST:PORT; got '{printable(address)}'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise SettingsError(f"--ray-address {printable(address)}: nothing answers there "
                            f"({exc.strerror or exc or 'no answer'}); is the cluster up?") from None


def _quiet_ray_data() -> None:
    """Ray Data's progress lines and its tracebacks go to Ray's own log files only: lnca reports each file, and
    an error, in one line."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.CRITICAL)


def _pool(ray, workers: Workers) -> dict:
    """map_batches' arguments for a planned pool: a fixed number of actors, what each reserves, a row a call."""
    return {"compute": ray.data.ActorPoolStrategy(size=workers.count), "num_cpus": workers.threads,
            "num_gpus": workers.gpus or None, "batch_size": 1}


def _model_source(model: LNCA) -> dict:
    """How a worker loads the very model this process has: by its name (each node finds its own copy) or
    by its file's absolute path, and the sha256 of the file here, which the worker's must match."""
    info = getattr(model, "info", {})
    if "path" not in info:
        raise SettingsError("the Ray engine loads the model on every worker: give a model loaded by name or "
                            "from a .safetensors file (load_model), not one built in memory")
    name = info["name"]
    return {"model": os.path.abspath(name) if os.path.isfile(name) else name, "sha256": sha256_of(info["path"])}


# ---------------------------------------------------------------- the workers


class _ModelWorker:
    """What every worker actor does first: its CPU threads, and the model, loaded once and checked to be
    the file that the driver loaded (a node with other weights would give other outputs)."""

    def __init__(self, *, model: str, sha256: str, settings: RestoreSettings, threads: int):
        keep_freed_memory()
        set_threads(threads)
        self.model = load_model(model, offline=settings.offline)
        if sha256_of(self.model.info["path"]) != sha256:
            raise LncaError(f"{platform.node()}: the model {printable(model)} there ({self.model.info['path']}) is "
                            f"not the file lnca was started with; install the same lnca and weights on every node")
        self.settings = settings
        self.backend = backend_for(self.model, settings)  # once per worker: a graph back end compiles


class FileWorker(_ModelWorker):
    """A worker of `--engine ray`: restores the files of its batches one by one, as the local engine does."""

    def __init__(self, *, folder: str, inputs: frozenset[str], control, **model):
        # A terminal's Ctrl-C reaches every process of its group, the workers too; it is the driver's to
        # handle (it stops the files not begun), so that a file in hand is finished and reported.
        with contextlib.suppress(ValueError):  # ValueError: not the main thread, where signals are not set
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            os.chdir(folder)  # the jobs' relative paths, and their messages, are the driver's
        except OSError:
            raise LncaError(f"{platform.node()}: there is no folder {printable(folder)}, where lnca was started; "
                            f"every node must see the inputs and outputs at the same paths") from None
        super().__init__(**model)
        self.inputs, self.control = resolved_paths(inputs), control  # here, where the files are read
        self.stopping = False  # once the run stops, no file is begun: the worker need not ask again

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [self._restore(int(index), Job(os.fsdecode(source), os.fsdecode(target), named=bool(named)))
                for index, source, target, named in zip(batch["index"], batch["source"], batch["target"],
                                                        batch["named"])]
        return {key: [row[key] for row in rows] for key in rows[0]}

    def _restore(self, index: int, job: Job) -> dict:
        import ray

        verdict, row = (STOPPING, None) if self.stopping else ray.get(self.control.begin.remote(index))
        self.stopping = verdict == STOPPING
        if verdict == FINISHED:  # by a worker that died before its block was done
            return row
        if verdict == STOPPING:
            return _row(index, FileResult(job.source, job.target, NOT_STARTED), False)
        if verdict == GAVE_UP:
            error = f"{printable(job.source)}: the Ray worker restoring it died, twice (out of memory?)"
            row = _row(index, FileResult(job.source, job.target, "failed", error=error), False)
        else:
            row = _row(index, *self.restore_job(job))
        ray.get(self.control.end.remote(index, row))
        return row

    def restore_job(self, job: Job) -> tuple[FileResult, bool]:
        """The local engine's restore of one file, and whether it found the disk full."""
        return restore_job(job, self.model, self.settings, self.inputs, self.backend)


class ImageWorker(_ModelWorker):
    """A worker of restore_dataset: restores the image in `column` of each row."""

    def __init__(self, *, column: str, **model):
        super().__init__(**model)
        self.column = column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.settings
        batch[self.column] = [restore(image, self.model, steps=s.steps, tile=s.tile, seed=s.seed, ensemble=s.ensemble,
                                      backend=self.backend)  # the back end holds the device and precision
                              for image in batch[self.column]]
        return batch


class RunControl:
    """One small actor per run, which every worker asks before each file whether to begin it (not once
    the run stops; not again once finished; not a third time, once two workers died on it) and tells
    its result after."""

    def __init__(self) -> None:
        self.stopping = False
        self.tries: Counter[int] = Counter()
        self.finished: dict[int, dict] = {}  # index: its result's row

    def begin(self, index: int) -> tuple[str, dict | None]:
        """(GO, None) to restore the file; else (FINISHED, its row), (STOPPING, None) or (GAVE_UP, None)."""
        if index in self.finished:
            return FINISHED, self.finished[index]
        if self.stopping:
            return STOPPING, None
        self.tries[index] += 1
        if self.tries[index] > TRIES:
            return GAVE_UP, None
        return GO, None

    def end(self, index: int, row: dict) -> None:
        self.finished[index] = row

    def stop(self) -> None:
        self.stopping = True


def _row(index: int, result: FileResult, disk_full: bool) -> dict:
    width, height = result.size or (0, 0)
    return {"index": index, "status": result.status, "seconds": result.seconds, "width": width, "height": height,
            "error": result.error, "disk_full": disk_full}


def _file_result(job: Job, row: dict) -> FileResult:
    size = [int(row["width"]), int(row["height"])] if row["width"] else []
    return FileResult(job.source, job.target, str(row["status"]), float(row["seconds"]), size, str(row["error"]))


# ---------------------------------------------------------------- the driver


def check_files_only(jobs: list[Job]) -> None:
    """Workers read and write files: stdin and stdout ('-') are this process's, and stay with the local engine."""
    if any(STDIO in (job.source, job.target) for job in jobs):
        raise SettingsError("--engine ray reads and writes files; stdin and stdout (-) need --engine local")


def restore_files_on_ray(jobs: list[Job], model: LNCA, settings: RestoreSettings, workers: Workers = Workers(),
                         address: str | None = None, on_result: Callable[[FileResult], None] | None = None,
                         stop: Stop | None = None, worker: type[FileWorker] = FileWorker) -> list[FileResult]:
    """restore_files on Ray's workers (a local instance, or the cluster at `address`; see ray_connected):
    the same outputs and results, in the jobs' order. `stop` (a signal, or a full disk) stops the files
    not yet begun, and the files in hand are finished; the results then cover the files begun. `worker`
    is the actor class: a FileWorker, or a subclass that does more around each file (restore_job)."""
    check_files_only(jobs)
    stop = stop or Stop()
    with ray_connected(address) as ray:
        planned = plan_workers(ray, workers)
        clean_output_folders(jobs)
        control = ray.remote(num_cpus=0)(RunControl).remote()
        dataset = _job_dataset(ray, jobs, planned.count).map_batches(
            worker, fn_constructor_kwargs={
                "folder": os.getcwd(), "inputs": frozenset(job.source for job in jobs), "control": control,
                "settings": settings, "threads": planned.threads, **_model_source(model)},
            **_pool(ray, planned))
        dataset.context.execution_options.preserve_order = True  # results in the jobs' order, as locally
        dataset.context.enable_progress_bars = False  # lnca shows its own
        # Read to its end, also when stopping (the files not begun come back at once): Ray Data's threads
        # that fetch the results outlive a job left early, and Ray's shutdown under them ends the process.
        try:
            with _relaying(stop, control):
                return _collect(dataset.iter_batches(batch_size=None, batch_format="numpy"), jobs, on_result, stop)
        except ray.exceptions.RayError as exc:
            raise LncaError(f"the Ray job failed: {_cause(exc)}") from exc


def _job_dataset(ray, jobs: list[Job], workers: int):
    """The jobs as a dataset of BLOCKS_PER_WORKER blocks per worker (or one a file, for fewer files); paths
    as bytes, which every file name is (Arrow's strings must be UTF-8)."""
    items = [{"index": i, "source": os.fsencode(job.source), "target": os.fsencode(job.target), "named": job.named}
             for i, job in enumerate(jobs)]
    return ray.data.from_items(items, override_num_blocks=min(len(items), workers * BLOCKS_PER_WORKER))


@contextlib.contextmanager
def _relaying(stop: Stop, control) -> Iterator[None]:
    """A thread that tells the workers as soon as `stop` is asked, so that they begin no other file."""
    done = threading.Event()

    def relay() -> None:
        while not done.wait(0.1):
            if stop.reason:
                control.stop.remote()
                return

    thread = threading.Thread(target=relay, name="lnca-ray-stop", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _collect(blocks, jobs: list[Job], on_result, stop: Stop) -> list[FileResult]:
    """Report each file's result as its block comes (in the jobs' order); a full disk stops the run."""
    results: dict[int, FileResult] = {}
    for row in (dict(zip(block, values)) for block in blocks for values in zip(*block.values())):
        if row["status"] != NOT_STARTED:
            index = int(row["index"])
            results[index] = result = _file_result(jobs[index], row)
            if on_result:
                on_result(result)
            if row["disk_full"]:
                stop.reason = "the disk is full"
    return [results[index] for index in sorted(results)]


_RAISED = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception): ")  # "lnca_cli.errors.LncaError: " in a traceback


def _cause(exc: BaseException) -> str:
    """What failed inside Ray's wrappers, in one line: a task's error is its RayTaskError's cause; a worker
    that failed to start (ActorDiedError) carries its traceback as text, whose last line is the error."""
    while getattr(exc, "cause", None) is not None and exc.cause is not exc:
        exc = exc.cause
    lines = [line for line in str(getattr(exc, "error_msg", "") or "").splitlines() if line.strip()]
    return printable(_RAISED.sub("", lines[-1]) if lines else first_line(exc))


# ---------------------------------------------------------------- datasets


def restore_dataset(dataset, model: str | None = None, task: str = "denoise", settings: RestoreSettings | None = None,
                    workers: Workers = Workers(), column: str = "image"):
    """`dataset` (a ray.data.Dataset) with the image in each row's `column` restored: (H, W) or (H, W, C)
    arrays, uint8, uint16 or float in [0, 1], as ray.data.read_images makes them; the same shape and
    dtype back, the other columns as they are. Lazy, as Ray Data's transforms are: it runs when the
    result is consumed or written; rows keep their order only if Ray Data is told to
    (DataContext.get_current().execution_options.preserve_order = True), so carry a key column. The pool leaves a CPU of the cluster to the rest of the pipeline
    (reading, writing). The settings (steps, device, tile, precision, seed, ensemble) are checked and the model
    found here first (a SettingsError); Ray is connected (ray.init()) if it is not yet."""
    settings = settings or RestoreSettings()
    loaded = prepare(task, model, settings)
    ray = import_ray()
    if not ray.is_initialized():
        ray.init()
    planned = plan_workers(ray, workers, spare_cpus=1)  # a pool on every CPU would starve the reads: a deadlock
    return dataset.map_batches(ImageWorker, fn_constructor_kwargs={
        "column": column, "settings": settings, "threads": planned.threads, **_model_source(loaded)},
        **_pool(ray, planned))
