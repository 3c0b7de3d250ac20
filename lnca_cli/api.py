"""File-level API: which outputs a run writes, and restoring files one by one.

This is what the CLI calls and what library users import. Per-file problems become a failed
FileResult (the batch goes on); bad settings raise SettingsError before any work starts. A batch
stops early, after the file in hand, on SIGINT/SIGTERM (see Stop) or when the disk is full.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from lnca_cli.backends import DEFAULT_BACKEND, Backend, check_backend, open_backend
from lnca_cli.devices import DeviceError
from lnca_cli.engine import check_tile, restore_tensor
from lnca_cli.ensemble import check_ensemble
from lnca_cli.errors import Interrupted, SettingsError, first_line, printable
from lnca_cli.files import remove_stale_temporary_files
from lnca_cli.hub import WeightsError, load_model
from lnca_cli.images import (READ_EXTENSIONS, SUPPORTED_EXTENSIONS, WRITE_FORMATS, ImageError, encode_image,
                             find_images, format_for_extension, read_image, write_image,
                             written_by_lnca)
from lnca_cli.model import LNCA, MAX_STEPS
from lnca_cli.tasks import get_task

STDIO = "-"
SEEDS = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


@dataclass(frozen=True)
class Job:
    """One input and where its output goes; either may be '-' (stdin/stdout)."""

    source: str
    target: str
    format: str | None = None  # image format for stdout; files take theirs from the extension
    named: bool = False  # the user named this target (-o FILE): with overwrite, it is replaced even if lnca
    # did not write it; any other existing file that lnca did not write is never replaced


@dataclass
class RestoreSettings:
    steps: int | None = None  # None: the model's default
    device: str = "auto"
    tile: int | str = "auto"  # core side in pixels, 0 for none
    precision: str = "auto"  # auto, fp32, bf16 or fp16 (devices.resolve_precision, backends.graph_precision)
    backend: str = DEFAULT_BACKEND  # what computes each tile: backends.BACKENDS
    graph: str | None = None  # an ONNX graph file (lnca export) for a graph back end; None: built from the model
    seed: int = 0
    ensemble: int = 1  # views of each image restored and averaged (ensemble.py)
    quality: int | None = None  # JPEG/WebP quality; None: 95, or a JPEG input's own when higher
    overwrite: bool = False
    offline: bool = False  # use bundled or cached models only, never download
    max_pixels: int | None = None  # refuse larger images; None: Pillow's decompression-bomb limit, 0: none


@dataclass
class FileResult:
    input: str
    output: str
    status: str  # done | skipped | failed
    seconds: float = 0.0
    size: list[int] = field(default_factory=list)  # [width, height]
    error: str = ""


# ---------------------------------------------------------------- planning outputs


def _output_name(source: Path, task: str, suffix: str | None, ext: str | None) -> str:
    """`<stem>_<suffix>.<ext>`; without --ext, the input's extension, or .png for one lnca cannot write (GIF)."""
    if ext is not None:
        extension = "." + ext.lower().lstrip(".")
    else:
        extension = source.suffix if source.suffix.lower() in SUPPORTED_EXTENSIONS else ".png"
    return f"{source.stem}_{suffix if suffix is not None else task}{extension}"


def _looks_like_file(output: str) -> bool:
    path = Path(output)
    return output == STDIO or (not path.is_dir() and path.suffix.lower() in READ_EXTENSIONS)


def plan_jobs(paths: Iterable[str], task: str, output: str | None = None, suffix: str | None = None,
              ext: str | None = None, recursive: bool = False) -> list[Job]:
    """Map inputs (files, folders, '-') to outputs: `<stem>_<suffix>.<ext>` beside the input, or in
    the output folder mirroring sub-folders; `output` may also name one file or '-' for stdout.
    Raises SettingsError when two inputs would have one output (listing them all)."""
    ext_format = _check_format("." + ext.lstrip(".")) if ext else None
    if suffix is not None and any(sep and sep in suffix for sep in ("/", os.sep, os.altsep, "\0")):
        raise SettingsError(f"--suffix is part of a file name and cannot hold '/' or NUL; got {printable(suffix)!r}")
    sources: list[tuple[str, Path | None]] = []  # (input, folder it was found under)
    for raw in paths:
        path = Path(raw)
        if raw == STDIO:
            sources.append((STDIO, None))
        elif path.is_dir():
            sources.extend((str(p), path) for p in find_images(path, recursive))
        else:
            sources.append((raw, None))  # a missing or unreadable file fails on its own, later
    if not sources:
        raise SettingsError("no input images found" + ("" if recursive else " (use --recursive for sub-folders)"))
    if output is not None and _looks_like_file(output):
        if len(sources) > 1:
            raise SettingsError(f"-o {output} names one file, but there are {len(sources)} inputs; give a folder")
        return [Job(sources[0][0], output, ext_format if output == STDIO else None, named=output != STDIO)]
    jobs = []
    for source, root in sources:
        if source == STDIO:
            jobs.append(Job(STDIO, STDIO, ext_format))
            continue
        name = _output_name(Path(source), task, suffix, ext)
        if output is None:
            target = Path(source).with_name(name)
        else:
            relative = Path(source).parent.relative_to(root) if root else Path()
            target = Path(output) / relative / name
        jobs.append(Job(source, str(target)))
    jobs = _without_own_outputs(jobs, {str(p) for p, root in sources if root is not None})
    _check_collisions(jobs)
    return jobs


def _without_own_outputs(jobs: list[Job], found_in_folders: set[str]) -> list[Job]:
    """Drop files found in a folder that are this run's own outputs from an earlier run: planned as an
    output here, and marked as written by lnca (a user's file of the same name stays an input)."""
    targets = {os.path.realpath(job.target) for job in jobs if job.target != STDIO}
    return [job for job in jobs if job.source not in found_in_folders
            or os.path.realpath(job.source) not in targets or not written_by_lnca(job.source)]


def _check_collisions(jobs: list[Job]) -> None:
    """Refuse a run in which two inputs would be written to one output, before any file is touched."""
    sources_of: dict[str, list[Job]] = {}
    for job in jobs:
        if job.target != STDIO:
            sources_of.setdefault(os.path.realpath(job.target), []).append(job)
    shared = [group for group in sources_of.values() if len({os.path.realpath(j.source) for j in group}) > 1]
    if shared:
        listed = "; ".join(f"{', '.join(printable(j.source) for j in group)} -> {printable(group[0].target)}"
                           for group in shared)
        raise SettingsError(f"{len(shared)} output{'s' if len(shared) > 1 else ''} would be written from more than "
                            f"one input: {listed}; restore those inputs in separate runs (another --suffix or -o)")


def _check_format(extension: str) -> str:
    try:
        return format_for_extension(extension)
    except ImageError as exc:
        raise SettingsError(str(exc)) from None


# ---------------------------------------------------------------- settings


def prepare(task: str, model_name: str | None, settings: RestoreSettings) -> LNCA:
    """Check every setting and load the model before any file is touched."""
    get_task(task)  # an unknown one is a SettingsError
    if settings.steps is not None and not 1 <= settings.steps <= MAX_STEPS:
        raise SettingsError(f"--steps must be between 1 and {MAX_STEPS}, got {settings.steps}")
    if not SEEDS[0] <= settings.seed <= SEEDS[1]:
        raise SettingsError(f"--seed must be between {SEEDS[0]} and {SEEDS[1]} (64 bits), got {settings.seed}")
    check_ensemble(settings.ensemble)
    if settings.quality is not None and not 1 <= settings.quality <= 100:
        raise SettingsError(f"--quality must be between 1 and 100, got {settings.quality}")
    if settings.max_pixels is not None and settings.max_pixels < 0:
        raise SettingsError(f"--max-pixels must be 0 (no limit) or a number of pixels, got {settings.max_pixels}")
    if settings.tile != "auto" and int(settings.tile) < 0:
        raise SettingsError(f"--tile must be 0 (no tiling), auto, or a number of pixels; got {settings.tile}")
    try:
        model = load_model(model_name, task, settings.offline)
        check_backend(settings.backend, model, settings.steps, settings.device, settings.precision, settings.graph)
        if settings.tile != "auto":
            check_tile(model, settings.steps or model.config.steps, int(settings.tile))
    except (DeviceError, WeightsError) as exc:
        raise SettingsError(str(exc)) from None
    return model


# ---------------------------------------------------------------- restoring


class Stop:
    """Asks restore_files to stop before its next file, and says why: `reason` is '' while the batch
    goes on; `signal` is the number of the signal that stopped it (0 for none)."""

    def __init__(self) -> None:
        self.reason, self.signal = "", 0
        self._at_once = False  # a signal stops at once, not after the file (see at_once)

    @contextlib.contextmanager
    def on_signals(self, notify: Callable[[str], None] | None = None):
        """While active (main thread only), the first SIGINT or SIGTERM stops the batch after the
        current file and calls notify(reason); a second one stops at once (raises Interrupted, whose
        exit code is 128 + the signal). Either way no partial output file is left: writes are atomic."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handle(signum, frame):
            if not self.signal:
                self.reason, self.signal = f"interrupted by {signal.Signals(signum).name}", signum
                if notify and not self._at_once:
                    notify(self.reason)
                if not self._at_once:
                    return
            raise Interrupted(signum)

        saved = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for number, handler in saved.items():
                signal.signal(number, handler)

    @contextlib.contextmanager
    def at_once(self):
        """Within: a signal stops at once (Interrupted), for work that cannot be finished safely once
        asked to stop, such as a stream to stdout that the reader has stopped taking."""
        self._at_once = True
        try:
            yield
        finally:
            self._at_once = False


def resolved_paths(paths: Iterable[str]) -> frozenset[str]:
    """The real paths of a batch's inputs (stdin left out), resolved once for the batch: each file's
    target is checked against them, and resolving them per file would cost N^2 for N files."""
    return frozenset(os.path.realpath(p) for p in paths if p != STDIO)  # realpath never raises


def _skip_or_check_target(job: Job, settings: RestoreSettings, resolved_inputs: frozenset[str]) -> bool:
    """True if the target is an earlier output of lnca's to keep; raises ImageError, before any work,
    for a target that would replace an input or a file lnca did not write, has no writable format, or
    whose folder cannot be written."""
    target, shown = Path(job.target), printable(job.target)
    real_target = os.path.realpath(job.target)
    if real_target in resolved_inputs or real_target in resolved_paths([job.source]):  # no per-file set copy
        raise ImageError(f"output {shown} would overwrite an input file; choose another -o or --suffix")
    if os.path.lexists(target):
        if not written_by_lnca(target) and not (job.named and settings.overwrite):
            how = "--overwrite replaces it, since you named it" if job.named else "choose another -o or --suffix"
            raise ImageError(f"output {shown} exists and lnca did not write it, so it is kept; {how}")
        if not settings.overwrite:
            return True
    try:
        format_for_extension(target.suffix)
    except ImageError:
        raise ImageError(f"output {shown}: lnca cannot write {target.suffix or 'files without an extension'}; "
                         f"choose an output format with --ext (jpg, png, tif, webp or bmp)") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"{printable(str(target.parent))}: cannot create the output folder ({exc.strerror})") from exc
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ImageError(f"{printable(str(target.parent))}: output folder is not writable")
    return False


def restore_file(job: Job, model: LNCA, settings: RestoreSettings, input_paths: Iterable[str] = (),
                 on_progress: Callable[[int, int], None] | None = None, backend: Backend | None = None) -> FileResult:
    """Restore one file; never raises for a bad file, never writes over an input (its own, or one of
    `input_paths`) or a file lnca did not write (unless the job names it and overwrite is set), nor over
    an earlier output unless overwrite. Calling it for many files, pass the back end, opened once with
    backend_for: a graph back end exports and compiles the model each time it is opened."""
    backend = backend or backend_for(model, settings)
    return _restore_file(job, model, settings, resolved_paths(input_paths), on_progress, Stop(), backend)[0]


def backend_for(model: LNCA, settings: RestoreSettings) -> Backend:
    """The back end that computes the settings' tiles; open it once for a batch (a graph back end
    exports and compiles the model)."""
    return open_backend(settings.backend, model, settings.steps, settings.device, settings.precision, settings.graph)


def _restore_file(job: Job, model: LNCA, settings: RestoreSettings, resolved_inputs: frozenset[str],
                  on_progress: Callable[[int, int], None] | None, stop: Stop,
                  backend: Backend) -> tuple[FileResult, Exception | None]:
    """restore_file, and the error that failed it (None if it did not fail)."""
    result, error = FileResult(job.source, job.target, "done"), None
    started = time.perf_counter()
    try:
        if job.source != STDIO and not os.path.lexists(job.source):
            raise ImageError(f"{printable(job.source)}: no such file or folder")
        if job.target != STDIO and _skip_or_check_target(job, settings, resolved_inputs):
            result.status = "skipped"
            return result, error
        source = _read_stdin() if job.source == STDIO else job.source
        pixels, meta = read_image(source, settings.max_pixels)
        result.size = [pixels.shape[-1], pixels.shape[-2]]
        restored = restore_tensor(pixels, model, steps=settings.steps, tile=settings.tile, seed=settings.seed,
                                  on_progress=on_progress, backend=backend, ensemble=settings.ensemble)
        del pixels  # the input's memory is free before the output is encoded
        if job.target == STDIO:
            fmt = job.format or (meta.format if meta.format in WRITE_FORMATS else "PNG")
            _write_to_stdout(encode_image(restored, meta, format=fmt, quality=settings.quality), stop)
        else:
            write_image(job.target, restored, meta, quality=settings.quality)
    except (ImageError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        result.status, result.error, error = "failed", _one_line(exc, job.source), exc
    result.seconds = round(time.perf_counter() - started, 3)
    return result, error


def _read_stdin() -> bytes:
    """All of stdin, a block at a time: Python runs signal handlers between blocks, so a signal is
    handled while lnca waits for input (inside one long read() it would wait for the end of the input)."""
    blocks = []
    while block := sys.stdin.buffer.read1(1 << 16):
        blocks.append(block)
    return b"".join(blocks)


def _write_to_stdout(data: bytes, stop: Stop) -> None:
    """Write every byte to stdout, past short writes, straight to the file under Python's buffer (so
    that nothing is left to write at exit); a signal stops it at once, leaving the stream incomplete."""
    sys.stdout.flush()
    stream = getattr(sys.stdout.buffer, "raw", sys.stdout.buffer)
    sys.stdout.buffer.flush()
    view, written = memoryview(data), 0
    try:
        with stop.at_once():
            while written < len(view):
                count = stream.write(view[written:])
                if count is None:  # a non-blocking stdout that is full: wait until it takes more
                    select.select([], [stream], [])
                written += count or 0
    except Interrupted as exc:
        raise ImageError(f"<stdout>: {stop.reason} after {written:,} of {len(view):,} bytes of the image: "
                         f"what was written is incomplete") from exc
    except BrokenPipeError as exc:
        raise ImageError(f"<stdout>: the reader closed the pipe after {written:,} of {len(view):,} bytes of the "
                         f"image: what it got is incomplete") from exc


_ALLOCATOR_FAILURE = re.compile(r"DefaultCPUAllocator|out of memory|can't allocate memory", re.IGNORECASE)


def _one_line(exc: BaseException, source: str) -> str:
    """What failed a file, as one printable line that begins with the input's name, once."""
    name = "<stdin>" if source == STDIO else printable(source)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and _ALLOCATOR_FAILURE.search(str(exc))):
        text = "not enough memory to restore this image (a smaller --tile needs less)"
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{printable(os.fsdecode(exc.filename or source))}: {exc.strerror}"
    else:
        text = printable(first_line(exc))
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}  # no space, or over the quota


def _disk_full(exc: BaseException | None) -> bool:
    """Whether exc (or what caused it) says the disk or the quota is full: the next files would fail too."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        exc = exc.__cause__
    return False


def restore_job(job: Job, model: LNCA, settings: RestoreSettings, resolved_inputs: frozenset[str], backend: Backend,
                on_progress: Callable[[int, int], None] | None = None,
                stop: Stop | None = None) -> tuple[FileResult, bool]:
    """One file of a batch (restore_file) through the batch's back end (backend_for), given the batch's
    inputs (resolved_paths), and whether it found the disk full: then the next files would fail too,
    and the batch should stop. Every engine restores its files with this."""
    result, error = _restore_file(job, model, settings, resolved_inputs, on_progress, stop or Stop(), backend)
    return result, _disk_full(error)


def clean_output_folders(jobs: list[Job]) -> None:
    """Remove the temporary files that killed runs left in the jobs' output folders (see files.py)."""
    for folder in {os.path.dirname(os.path.abspath(job.target)) for job in jobs if job.target != STDIO}:
        remove_stale_temporary_files(folder)


def restore_files(jobs: list[Job], model: LNCA, settings: RestoreSettings,
                  on_result: Callable[[FileResult], None] | None = None,
                  on_progress: Callable[[int, int], None] | None = None, stop: Stop | None = None) -> list[FileResult]:
    """Restore every job in turn; a failed file never stops the batch, but a full disk or `stop`
    (a signal) does, before the next file: the results then cover only the files begun, and
    stop.reason says why. First, the temporary files that killed runs left in the output folders go, and
    the back end is opened, once for the batch."""
    stop = stop or Stop()
    inputs = resolved_paths(job.source for job in jobs)
    clean_output_folders(jobs)
    backend, results = backend_for(model, settings), []
    for job in jobs:
        if stop.reason:
            break
        result, disk_full = restore_job(job, model, settings, inputs, backend, on_progress, stop)
        results.append(result)
        if on_result:
            on_result(result)
        if disk_full:
            stop.reason = "the disk is full"
    return results
