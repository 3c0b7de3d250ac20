"""`lnca restore`, and `lnca denoise` / `lnca deblur`: the same command with --task fixed."""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
from dataclasses import asdict
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from lnca_cli.cli._options import (BackendOption, DeviceOption, EnsembleOption, GraphOption, ModelOption,
                                   RayAddressOption, StepsOption, TaskOption, ThreadsOption, err, fail, friendly,
                                   print_error, say_stopping, use_threads)
from lnca_cli.errors import printable


class Reporter:
    """Progress and per-file lines: a Rich bar on a terminal, plain lines otherwise, JSON with --json."""

    def __init__(self, total: int, quiet: bool, as_json: bool, image_to_stdout: bool):
        self.quiet, self.as_json = quiet, as_json
        self.json_stream = sys.stderr if image_to_stdout else sys.stdout
        self.progress = None
        if not quiet and not as_json and err.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=err, transient=True)
            self.files = self.progress.add_task("files", total=total)
            self.steps = self.progress.add_task("NCA steps", total=None)

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def on_progress(self, done: int, total: int) -> None:
        """The current image's NCA steps (every tile's), so that a one-tile image moves too."""
        if self.progress:
            self.progress.update(self.steps, completed=done, total=total)

    def on_result(self, result) -> None:
        if self.progress:
            self.progress.advance(self.files)
        if self.as_json:
            print(json.dumps(asdict(result)), file=self.json_stream, flush=True)
        elif result.status == "failed":
            err.print(Text("failed ", style="red"), result.error, soft_wrap=True)
        elif not self.quiet:
            note = f"{result.seconds:.2f} s" if result.status == "done" else "exists; --overwrite to replace"
            err.print(f"{result.status:7} {printable(result.input)} -> {printable(result.output)} ({note})",
                      soft_wrap=True)


def _parse_tile(tile: str) -> int | str:
    if tile == "auto":
        return tile
    try:
        return int(tile)
    except ValueError:
        fail(f"--tile must be a number of pixels, 0 or auto; got '{tile}'")


@friendly
def restore(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders, or - for stdin.", show_default=False)],
    task: TaskOption = "denoise",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output file, folder, or - for stdout. "
                                                  "Default: beside each input.")] = None,
    model: ModelOption() = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never download a model: use bundled or cached ones "
                                          "(also HF_HUB_OFFLINE=1).")] = False,
    steps: StepsOption = None,
    ensemble: EnsembleOption = 1,
    tile: Annotated[str, typer.Option(help="Tile side in pixels; 0 for no tiling; auto from memory.")] = "auto",
    device: DeviceOption = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16. auto: bf16 on a CPU with bf16 "
                                           "arithmetic (AVX512-BF16, AMX), fp32 otherwise.")] = "auto",
    half: Annotated[bool, typer.Option("--half/--no-half", help="Short for --precision fp16 (GPU only).")] = False,
    backend: BackendOption = "torch",
    graph: GraphOption = None,
    suffix: Annotated[Optional[str], typer.Option(help="Output name suffix. Default: the task name.")] = None,
    ext: Annotated[Optional[str], typer.Option("--ext", "--format", help="Output format: jpg, png, tif, webp, bmp. "
                                               "Default: the input's.")] = None,
    quality: Annotated[Optional[int], typer.Option(help="JPEG/WebP quality, 1-100. Default: 95, or a JPEG input's "
                                                   "own quality when higher (outputs are always re-encoded).",
                                                   show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (inputs are never replaced).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look into sub-folders.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for models with stochastic updates.")] = 0,
    threads: ThreadsOption = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="Refuse larger images (a guard against decompression "
                                                      "bombs); 0 for no limit. Default: Pillow's, 89M.",
                                                      show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per file on stdout.")] = False,
    engine: Annotated[str, typer.Option(help="local: restore here, file after file; ray: on the workers of a Ray "
                                        "cluster, or of a local Ray instance (pip install \"lnca\\[ray]\").")] = "local",
    ray_address: RayAddressOption = None,
    workers: Annotated[Optional[int], typer.Option(help="--engine ray: worker processes, each with the model loaded "
                                                   "once. Default: one per CPU (per --threads CPUs), or per "
                                                   "--gpus-per-worker of the cluster's GPUs.",
                                                   show_default=False)] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="--engine ray: GPUs each worker reserves (0.5: two share "
                                                   "one). Default: none.", show_default=False)] = 0.0,
) -> None:
    """Restore images with the model of a task."""
    from lnca_cli.api import RestoreSettings, Stop, plan_jobs, prepare, restore_files
    from lnca_cli.devices import keep_freed_memory

    keep_freed_memory()
    use_threads(threads)
    ray_workers = _ray_workers(engine, ray_address, workers, gpus_per_worker, threads)
    if half and precision not in ("auto", "fp16"):
        fail(f"--half means --precision fp16, but --precision {precision} was given too")
    settings = RestoreSettings(steps=steps, device=device, tile=_parse_tile(tile),
                               precision="fp16" if half else precision, backend=backend, graph=graph, seed=seed,
                               ensemble=ensemble, quality=quality,
                               overwrite=overwrite, offline=offline, max_pixels=max_pixels)
    jobs = plan_jobs(paths, task, output, suffix, ext, recursive)
    if any(job.target == "-" for job in jobs) and sys.stdout.isatty():
        fail("refusing to write an image to the terminal; redirect it (> out.png), pipe it, or give -o FILE")
    loaded = prepare(task, model, settings)
    if "train_config" not in loaded.info and not quiet:
        err.print(f"warning: model '{loaded.info['name']}' has no training record: it is UNTRAINED")
    stop = Stop()
    with (Reporter(len(jobs), quiet, as_json, any(j.target == "-" for j in jobs)) as reporter,
          stop.on_signals(say_stopping("after the current file"))):
        if ray_workers is None:
            results = restore_files(jobs, loaded, settings, reporter.on_result, reporter.on_progress, stop)
        else:
            results = _restore_on_ray(jobs, loaded, settings, ray_workers, ray_address, reporter, stop)
    failed = [r for r in results if r.status == "failed"]
    if not quiet and not as_json:
        counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
        err.print(", ".join(f"{n} {s}" for s, n in counts.items()))
    if failed and len(results) > 1 and not as_json:
        err.print("failed files:")
        for r in failed:
            err.print(f"  {r.error}", soft_wrap=True)
    if stop.reason:  # a signal, or a full disk: stop.reason says which
        left = len(jobs) - len(results)
        print_error(f"stopped, {stop.reason}: " + (f"{left} of {len(jobs)} files not started; run the same command "
                                                   f"again to go on (finished outputs are skipped)" if left else
                                                   "every file had been started"))
        raise typer.Exit(128 + stop.signal if stop.signal else 1)
    if failed:
        raise typer.Exit(1)


def _ray_workers(engine: str, address: str | None, workers: int | None, gpus_per_worker: float,
                 threads: int | None):
    """The Ray engine's pool (distributed.Workers), or None for the local engine. Ray's options without
    --engine ray, and --engine ray without Ray installed, are usage errors, found before any file is read."""
    if engine not in ("local", "ray"):
        fail(f"--engine must be local or ray, got '{engine}'")
    if engine == "local":
        given = [name for name, value in (("--ray-address", address), ("--workers", workers),
                                          ("--gpus-per-worker", gpus_per_worker or None)) if value is not None]
        if given:
            fail(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --engine ray")
        return None
    from lnca_cli.distributed import Workers, import_ray

    import_ray()
    return Workers(workers, threads, gpus_per_worker)


def _restore_on_ray(jobs, model, settings, workers, address: str | None, reporter: Reporter, stop):
    """The Ray engine's batch. Ray prints its raylet's messages (a worker that died...) on Python's stdout,
    which holds --json's lines: while Ray runs, that is stderr (the reporter keeps the real stdout)."""
    from lnca_cli.distributed import restore_files_on_ray

    with contextlib.redirect_stdout(sys.stderr):
        return restore_files_on_ray(jobs, model, settings, workers, address, reporter.on_result, stop)


def _task_command(task: str):
    """`lnca <task> PATHS...`: restore with --task fixed (same options otherwise)."""

    @functools.wraps(restore)
    def command(**kwargs):
        return restore(task=task, **kwargs)

    signature = inspect.signature(restore, eval_str=True)
    command.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "task"])
    command.__doc__ = f"{task.capitalize()} images: files, folders (-r for sub-folders), or - for stdin."
    return command


denoise = _task_command("denoise")
deblur = _task_command("deblur")
