"""The `lnca` command: a thin Typer + Rich layer over lnca_cli.api. No tensor maths here.

Exit codes: 0 all done (or skipped), 1 some files failed, 2 bad usage or settings, 128 + N stopped
by signal N (130 SIGINT, 143 SIGTERM). Human messages go to stderr; --json lines go to stdout (to stderr when the image itself does).
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from lnca_cli import __version__
from lnca_cli.errors import Interrupted, LncaError, first_line, printable
from lnca_cli.recipe import PIXEL_LOSSES, TrainConfig
from lnca_cli.tasks import TASKS, get_task

app = typer.Typer(
    help="Restore photographs (denoise, deblur) with Latent Neural Cellular Automata.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False, markup=False, emoji=False)  # file names print as they are
STATE = {"debug": False}


def print_error(message: str) -> None:
    err.print(Text("error:", style="red"), message, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    print_error(message)
    raise typer.Exit(code)


def friendly(command):
    """Turn any error into one line and an exit code; --debug shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as exc:  # a second signal, or Ctrl-C outside a batch; outputs are atomic
            fail("interrupted", exc.exit_code if isinstance(exc, Interrupted) else 130)
        except LncaError as exc:  # its message is written for users
            if STATE["debug"]:
                raise
            fail(str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
            if STATE["debug"]:
                raise
            fail(f"{type(exc).__name__}: {printable(first_line(exc))}", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"lnca {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_version,
                                          is_eager=True)] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    STATE["debug"] = debug


# ---------------------------------------------------------------- options more than one command takes

TaskOption = Annotated[str, typer.Option("--task", "-t", metavar="|".join(TASKS),  # checked by tasks.get_task
                                         help="; ".join(f"{t.name}: {t.help}" for t in TASKS.values()) + ".")]
EVAL_DEFAULTS = ", ".join(f"{t.eval_degradation} ({t.name})" for t in TASKS.values()) + "."
ThreadsOption = Annotated[Optional[int], typer.Option(help="CPU threads. Default: the physical cores that other "
                                                      "processes leave free (lnca info shows how many).",
                                                      show_default=False)]


def use_threads(threads: int | None) -> int:
    """Apply --threads (bad values are usage errors); returns the count in use."""
    from lnca_cli.devices import set_threads

    if threads is not None and threads < 1:
        fail(f"--threads must be at least 1, got {threads}")
    return set_threads(threads)


# ---------------------------------------------------------------- restore, denoise, deblur


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
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name or .safetensors path. "
                                                 "Default: the task's model.")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never download a model: use bundled or cached ones "
                                          "(also HF_HUB_OFFLINE=1).")] = False,
    steps: Annotated[Optional[int], typer.Option(help="NCA steps. Default: the model's.")] = None,
    tile: Annotated[str, typer.Option(help="Tile side in pixels; 0 for no tiling; auto from memory.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16. auto: bf16 on a CPU with bf16 "
                                           "arithmetic (AVX512-BF16, AMX), fp32 otherwise.")] = "auto",
    half: Annotated[bool, typer.Option("--half/--no-half", help="Short for --precision fp16 (GPU only).")] = False,
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
) -> None:
    """Restore images with the model of a task."""
    from lnca_cli.api import RestoreSettings, Stop, plan_jobs, prepare, restore_files
    from lnca_cli.devices import keep_freed_memory

    keep_freed_memory()
    use_threads(threads)
    if half and precision not in ("auto", "fp16"):
        fail(f"--half means --precision fp16, but --precision {precision} was given too")
    settings = RestoreSettings(steps=steps, device=device, tile=_parse_tile(tile),
                               precision="fp16" if half else precision, seed=seed, quality=quality,
                               overwrite=overwrite, offline=offline, max_pixels=max_pixels)
    jobs = plan_jobs(paths, task, output, suffix, ext, recursive)
    if any(job.target == "-" for job in jobs) and sys.stdout.isatty():
        fail("refusing to write an image to the terminal; redirect it (> out.png), pipe it, or give -o FILE")
    loaded = prepare(task, model, settings)
    if "train_config" not in loaded.info and not quiet:
        err.print(f"warning: model '{loaded.info['name']}' has no training record: it is UNTRAINED")
    stop = Stop()
    with (Reporter(len(jobs), quiet, as_json, any(j.target == "-" for j in jobs)) as reporter,
          stop.on_signals(_say_stopping)):
        results = restore_files(jobs, loaded, settings, reporter.on_result, reporter.on_progress, stop)
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


def _say_stopping(reason: str) -> None:
    """From a signal handler: a raw write to stderr (Python's buffered streams are not reentrant)."""
    try:
        os.write(2, f"{reason}: stopping after the current file (again to stop now)\n".encode())
    except OSError:
        pass


def _task_command(task: str):
    """`lnca <task> PATHS...`: restore with --task fixed (same options otherwise)."""

    @functools.wraps(restore)
    def command(**kwargs):
        return restore(task=task, **kwargs)

    signature = inspect.signature(restore, eval_str=True)
    command.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "task"])
    command.__doc__ = f"{task.capitalize()} images: files, folders (-r for sub-folders), or - for stdin."
    return command


app.command("denoise")(_task_command("denoise"))
app.command("deblur")(_task_command("deblur"))
app.command("restore")(restore)


# ---------------------------------------------------------------- models

models_app = typer.Typer(help="Pretrained models: list, download, check. A model is used from the package, else "
                         "from the Hugging Face cache, else downloaded once.", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(models_app, name="models")


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _quality(quality: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in quality.items()) or "-"


def _where(entry) -> tuple[str, Path | None]:
    """Where a model's file is, for people: bundled, cached, remote, or unpublished (no sha256 yet)."""
    from lnca_cli.hub import locate

    where, path = locate(entry)
    return ("unpublished" if where == "remote" and entry.sha256 is None else where), path


@models_app.command("list")
@friendly
def models_list() -> None:
    """The registry's models: task, size, quality and where each is (bundled, cached or remote)."""
    from rich import box
    from rich.table import Table

    from lnca_cli.hub import load_registry

    registry = load_registry()
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("name", "task", "default", "size", "quality", "where"):
        table.add_column(column, no_wrap=column != "quality", min_width=len(column))
    for entry in registry.models.values():
        default = "yes" if registry.defaults[entry.task] == entry.name else ""
        table.add_row(entry.name, entry.task, default, _size(entry.size), _quality(entry.quality), _where(entry)[0])
    Console(highlight=False).print(table)


@models_app.command("download")
@friendly
def models_download(
    names: Annotated[Optional[list[str]], typer.Argument(help="Model names, or tasks for their default models.",
                                                         show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model in the registry.")] = False,
) -> None:
    """Download models once into the Hugging Face cache, checking each file's sha256."""
    from lnca_cli.hub import WeightsError, fetch, load_registry, locate

    if all_models == bool(names):
        fail("give model names, or --all")
    registry = load_registry()
    entries = list(registry.models.values()) if all_models else [registry.entry(name) for name in names]
    failed = 0
    for entry in entries:
        try:
            path = fetch(entry)
        except WeightsError as exc:
            print_error(str(exc))
            failed += 1
            continue
        err.print(f"{entry.name}: {locate(entry)[0]}, sha256 ok: {path}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@models_app.command("info")
@friendly
def models_info(name: Annotated[str, typer.Argument(help="Model name, a task for its default model, or a "
                                                     ".safetensors file.")]) -> None:
    """What the registry says about a model, and where its file is; for a file, its config and training record."""
    from lnca_cli.hub import load_registry

    if name.endswith(".safetensors") or Path(name).is_file():
        _weights_file_info(name)
        return
    registry = load_registry()
    entry = registry.entry(name)
    where, path = _where(entry)
    rows = {
        "name": entry.name,
        "task": entry.task + (" (its default model)" if registry.defaults[entry.task] == entry.name else ""),
        "repo": f"{entry.repo_id} at {entry.revision}",
        "file": entry.filename,
        "size": _size(entry.size),
        "sha256": entry.sha256 or "none: not published yet",
        "recipe": entry.recipe or "-",
        "quality": _quality(entry.quality) if entry.quality else "not measured yet",
        "where": f"{where} {path}" if path else where,
    }
    for key, value in rows.items():
        print(f"{key + ':':9}{value}")


def _weights_file_info(path: str) -> None:
    """A weights file's own record: its architecture, config, task and how it was trained (metadata)."""
    from lnca_cli.hub import ARCH_KEY, CONFIG_KEY, load_weights, sha256_of

    model, metadata = load_weights(path)  # refuses anything that is not a usable lnca weights file
    rows = {"file": path, "sha256": sha256_of(path), "arch": metadata.get(ARCH_KEY, model.arch),
            "config": metadata[CONFIG_KEY], "task": metadata.get("task", "-"),
            "parameters": f"{sum(p.numel() for p in model.parameters()):,}"}
    rows.update({key: value for key, value in metadata.items() if key not in (ARCH_KEY, CONFIG_KEY, "task")})
    if "train_config" not in metadata:
        rows["training"] = "none recorded: an untrained model"
    width = max(map(len, rows)) + 2
    for key, value in rows.items():
        print(f"{key + ':':{width}}{printable(value)}")


@models_app.command("verify")
@friendly
def models_verify() -> None:
    """Check the sha256 of every bundled or cached model file; exit 1 if any is bad."""
    from lnca_cli.hub import load_registry, locate, matches

    checked = bad = 0
    for entry in load_registry().models.values():
        where, path = locate(entry)
        if path is None:
            continue
        ok = matches(entry, path)
        checked, bad = checked + 1, bad + (not ok)
        print(f"{'ok' if ok else 'BAD':4} {entry.name:20} {where:8} {path}")
    if bad:
        fail(f"{bad} of {checked} model files do not match the registry's sha256: `lnca models download NAME` "
             f"replaces a cached file; reinstall lnca for a bundled one", 1)
    if not checked:
        err.print("no bundled or cached model files to check")


@models_app.command("path")
@friendly
def models_path(name: Annotated[str, typer.Argument(help="Model name, or a task for its default model.")]) -> None:
    """Print the local file of a model (checked; never downloads), for scripts."""
    from lnca_cli.hub import fetch, load_registry, locate

    entry = load_registry().entry(name)
    if locate(entry)[1] is None:
        fail(f"model '{entry.name}' is neither bundled nor cached here; get it with `lnca models download "
             f"{entry.name}`", 1)
    print(fetch(entry, offline=True))


@models_app.command("register")
@friendly
def models_register(
    path: Annotated[str, typer.Argument(help="The .safetensors file to publish.")],
    name: Annotated[str, typer.Option(help="Model name, e.g. denoise-v1.")],
    task: Annotated[Optional[str], typer.Option(help="Its task; needed for a new model.")] = None,
) -> None:
    """For maintainers: record a weights file's sha256 and size in the registry (weights/models.json)."""
    from lnca_cli.hub import register, registry_path

    entry = register(path, name, task)
    print(f"{registry_path()}: {entry.name} = {entry.filename}, {entry.size} bytes, sha256 {entry.sha256}")
    print(f"publish it: upload {path} as {entry.filename} to {entry.repo_id} and tag that commit {entry.revision}")


# ---------------------------------------------------------------- info


@app.command()
@friendly
def info() -> None:
    """Versions, the device lnca would use, and the models available."""
    import torch

    from lnca_cli.devices import (PHYSICAL_CORES, cpu_has_bf16, default_threads, resolve_device, resolve_precision,
                                  usable_cpus)
    from lnca_cli.hub import load_registry

    device = resolve_device("auto")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"lnca {__version__}, torch {torch.__version__}, Python {platform.python_version()}")
    print(f"device: {device} ({name})")
    print(f"precision: auto is {resolve_precision(device)} here" + (
        " (the CPU has bf16 arithmetic)" if device.type == "cpu" and cpu_has_bf16() else ""))
    print(f"threads: {default_threads()} by default ({PHYSICAL_CORES} physical cores, {usable_cpus()} CPUs usable, "
          f"less those other processes keep busy)")
    print("models (lnca models list):")
    for entry in load_registry().models.values():
        where, path = _where(entry)
        print(f"  {entry.name:18} task={entry.task:15} {path or where}")


# ---------------------------------------------------------------- train


def RecipeOption(field: str, help: str, kind: type = int):  # noqa: N802 - it names a type, as Annotated does
    """An option that overrides one field of the training recipe; its help shows the recipe's default
    (and the paper preset's, where that differs)."""
    default, paper = getattr(TrainConfig(), field), getattr(TrainConfig.paper("denoise", 400), field)
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    paper = {"ae_iterations": "10 epochs", "nca_iterations": "10 epochs", "val_every": "an epoch"}.get(field, paper)
    note = "" if paper == default else f" (--preset paper: {paper})"
    return Annotated[Optional[kind], typer.Option(help=f"{help} Default: {shown}{note}.", show_default=False)]



@app.command()
@friendly
def train(
    data: Annotated[str, typer.Option(help="Folder of clean photos to train on (sub-folders included).")],
    out: Annotated[str, typer.Option(help="Where to write the best weights (.safetensors).")],
    task: TaskOption = "denoise",
    val: Annotated[Optional[str], typer.Option(help="Validation photos. Default: a fixed 5% of --data.")] = None,
    preset: Annotated[str, typer.Option(help="Architecture: wide-dw (default), wide or paper. 'paper' also "
                                        "sets the paper's training: 32x32 crops, batch 8, 10+10 epochs.")] = "wide-dw",
    crop: RecipeOption("crop", "Crop side in pixels (native resolution).") = None,
    batch: RecipeOption("batch", "Crops per batch.") = None,
    ae_iterations: RecipeOption("ae_iterations", "Phase 1 (autoencoder) batches.") = None,
    nca_iterations: RecipeOption("nca_iterations", "Phase 2 (NCA) batches.") = None,
    nca_lr: RecipeOption("nca_lr", "Phase 2 learning rate.", float) = None,
    e2e_iterations: RecipeOption("e2e_iterations", "Phase 3 batches: encoder, NCA and decoder trained together on "
                                 "the pixel loss.") = None,
    e2e_lr: RecipeOption("e2e_lr", "Phase 3 learning rate.", float) = None,
    loss: RecipeOption("loss", f"Phase 3 loss: {', '.join(PIXEL_LOSSES)}.", str) = None,
    min_steps: RecipeOption("min_steps", "Fewest NCA steps drawn for a batch (phases 2, 3).") = None,
    max_steps: RecipeOption("max_steps", "Most NCA steps drawn for a batch (phases 2, 3).") = None,
    val_every: RecipeOption("val_every", "Validate (and checkpoint) every N batches.") = None,
    checkpoint: Annotated[Optional[str], typer.Option(help="Resume from / save to this checkpoint.")] = None,
    autoencoder: Annotated[Optional[str], typer.Option(help="Skip phase 1: train the NCA on the autoencoder of "
                                                       "this trained model (.safetensors) of the same sizes.")] = None,
    init: Annotated[Optional[str], typer.Option(help="Skip phases 1 and 2: train this trained model "
                                                "(.safetensors) on, end to end (needs --e2e-iterations).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Stop cleanly after this long (resume later "
                                                     "with --checkpoint).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    log: Annotated[Optional[str], typer.Option(help="Append one JSON line per batch here.")] = None,
    plot: Annotated[Optional[str], typer.Option(help="Draw the loss curves to this PNG at the end (needs --log).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed for crops, degradations and initialisation.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out even if it is not an lnca weights file.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Train a model on your own photos (both phases of the paper), with checkpoints you can resume."""
    from dataclasses import replace

    from lnca_cli.devices import keep_freed_memory, resolve_device
    from lnca_cli.errors import SettingsError
    from lnca_cli.model import PRESETS
    from lnca_cli.train import list_images, plot_log, train as run_training

    keep_freed_memory()
    use_threads(threads)
    get_task(task)
    if preset not in PRESETS:
        raise SettingsError(f"unknown preset '{preset}'; expected one of {', '.join(PRESETS)}")
    if minutes is not None and not checkpoint:
        raise SettingsError("--minutes stops early and needs a --checkpoint to resume from")
    if plot and not log:
        raise SettingsError("--plot draws the --log file: give --log too")
    if init and autoencoder:
        raise SettingsError("--init and --autoencoder both say where to start: give one")
    if loss is not None and loss not in PIXEL_LOSSES:
        raise SettingsError(f"unknown --loss '{loss}'; expected one of {', '.join(PIXEL_LOSSES)}")
    _check_weights_out(out, data, overwrite)
    try:
        files = list_images(data)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    config = TrainConfig.paper(task, len(files)) if preset == "paper" else TrainConfig(task=task, preset=preset)
    overrides = dict(crop=crop, batch=batch, ae_iterations=ae_iterations, nca_iterations=nca_iterations,
                     nca_lr=nca_lr, e2e_iterations=e2e_iterations, e2e_lr=e2e_lr, loss=loss, min_steps=min_steps,
                     max_steps=max_steps, val_every=val_every)
    config = replace(config, seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    if init and not config.e2e_iterations:
        raise SettingsError("--init trains end to end: give --e2e-iterations too")
    if not 1 <= config.min_steps <= config.max_steps:
        raise SettingsError(f"--min-steps and --max-steps must satisfy 1 <= min <= max, got {config.min_steps} "
                            f"and {config.max_steps}")
    device_name = str(resolve_device(device))
    first_phase = 3 if init else 2 if autoencoder else 1
    before = {1: 0, 2: config.ae_iterations, 3: config.ae_iterations + config.nca_iterations}
    total = config.ae_iterations + config.nca_iterations + config.e2e_iterations - before[first_phase]
    progress = Progress(TextColumn("phase {task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3g}  val PSNR {task.fields[psnr]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err,
                        disable=not err.is_terminal)
    bar = progress.add_task("train", total=total, phase=1, loss=float("nan"), psnr="-")

    def on_iteration(row: dict) -> None:
        done = row["iteration"] + before[row["phase"]] - before[first_phase]
        fields = {"psnr": f"{row['psnr']:.2f} dB"} if "psnr" in row else {}
        progress.update(bar, completed=done, phase=row["phase"], loss=row["loss"], **fields)
        if "psnr" in row and not err.is_terminal:  # a log file or a pipe: one line per validation, with the ETA
            remaining = progress.tasks[0].time_remaining
            eta = f", ETA {remaining / 60:.0f} min" if remaining is not None else ""
            err.print(f"phase {row['phase']} iteration {row['iteration']} ({done}/{total} batches{eta}): loss "
                      f"{row['loss']:.4g}, val PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}", soft_wrap=True)

    with progress:
        try:
            result = run_training(data, out, config, val=val, checkpoint=checkpoint, minutes=minutes,
                                  device=device_name, log_path=log, on_iteration=on_iteration,
                                  autoencoder=autoencoder, init=init,
                                  metadata={"hardware": device_name, **({"init": init} if init else {})})
        except ValueError as exc:  # unusable photos or autoencoder: the user's to fix
            fail(str(exc))
    if plot:
        plot_log(log, plot)
    best = result["val_psnr"]
    if not result["finished"]:
        written = f"; the best weights so far ({best:.2f} dB) are in {out}" if result["val_psnr_by_steps"] else ""
        err.print(f"stopped after {minutes} min; resume with the same command (checkpoint {checkpoint}){written}")
        return
    print(f"wrote {out}: " + (f"best validation PSNR {best:.2f} dB" if best > -float("inf")
                              else "no NCA training (--nca-iterations 0): its autoencoder is for --autoencoder"))


def _check_weights_out(out: str, data: str, overwrite: bool) -> None:
    """Refuse an --out among the training photos, and (unless overwrite) an existing file that is not
    lnca weights: training would replace it with weights."""
    from lnca_cli.errors import SettingsError
    from lnca_cli.hub import CONFIG_KEY, WeightsError, read_metadata

    target = Path(out)
    if target.resolve().is_relative_to(Path(data).resolve()):
        raise SettingsError(f"--out {out} is inside --data {data}: weights are never written among the photos")
    if target.is_dir():
        raise SettingsError(f"--out {out} is a folder; give the weights file to write (.safetensors)")
    if target.exists() and not overwrite:
        try:
            weights = CONFIG_KEY in read_metadata(target)
        except WeightsError:
            weights = False
        if not weights:
            raise SettingsError(f"--out {out} exists and is not an lnca weights file; --overwrite replaces it")


# ---------------------------------------------------------------- eval


@app.command("eval")
@friendly
def eval_command(
    data: Annotated[str, typer.Option(help="Folder of clean images (e.g. a standard test set).")],
    task: TaskOption = "denoise",
    noise: Annotated[Optional[str], typer.Option("--noise", "--degradation", help="gaussian:SIGMA, poisson:PEAK, "
                                                 "masked:P, motion:LENGTH[:ANGLE], defocus:SIGMA. Default by "
                                                 "task: " + EVAL_DEFAULTS)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name or .safetensors path.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="NCA steps. Default: the model's.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the degradations (image i uses seed + i).")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N images.")] = None,
    save: Annotated[Optional[str], typer.Option(help="Write degraded | restored | clean PNGs here.")] = None,
    oracle: Annotated[bool, typer.Option(help="Score the autoencoder's ceiling instead: decode the clean image's "
                                         "latent with the degraded image's skip (no NCA).")] = False,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
) -> None:
    """Degrade clean images with a fixed seed, restore them, and score PSNR/SSIM against the originals."""
    use_threads(threads)
    from rich.console import Console

    from lnca_cli.api import RestoreSettings, prepare
    from lnca_cli.eval_report import format_table
    from lnca_cli.evaluate import evaluate

    settings = RestoreSettings(steps=steps, device=device)
    loaded = prepare(task, model, settings)
    spec = noise or get_task(task).eval_degradation
    try:
        report = evaluate(loaded, data, spec, steps=steps, device=device, seed=seed, limit=limit, save=save,
                          oracle=oracle)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        Console(highlight=False).print(format_table(report))


# ---------------------------------------------------------------- bench

bench_app = typer.Typer(help="Benchmarks: latent vs pixel NCA, the tool's speed and memory, quality against other "
                        "tools, steps vs quality. See docs/BENCHMARKS.md.", no_args_is_help=True,
                        context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(bench_app, name="bench")

# The benchmarks' defaults as the options show them (lnca_cli.bench is imported only when a bench command runs;
# tests/test_bench.py checks that these agree with its constants).
NCA_SIZES, NCA_TRAIN_SIZES, NCA_BUDGET_MIB, NCA_REPEATS = "32,64,128,256", "32,64,128", 2048.0, 3
SPEED_MEGAPIXELS = "1,12,50"
QUALITY_DEGRADATIONS = "gaussian:15,gaussian:25,gaussian:50,masked:0.5,motion:7,motion:15"
STEP_COUNTS = "8,16,32,64,128"

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
OutOption = Annotated[Optional[str], typer.Option("--out", help="Also write the JSON to this file.")]
PlotOption = Annotated[Optional[str], typer.Option("--plot", help="Draw the results to this PNG.")]
DataOption = Annotated[str, typer.Option(help="Folder of clean images, e.g. /path/to/Kodak24.")]
LimitOption = Annotated[Optional[int], typer.Option(help="Only the first N images.")]


def _numbers(text: str, option: str, kind: type = int) -> tuple:
    """"32,64,128" -> (32, 64, 128); a bad list is a usage error naming the option."""
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"{option} takes numbers separated by commas, got '{text}'")


def _bench_setup(threads: int | None):
    """Import the benchmarks (torch and friends) only when a bench command runs."""
    from lnca_cli import bench

    bench.set_threads(use_threads(threads))
    return bench


def _bench_note(message: str) -> None:
    err.print(message, style="dim")


def _bench_output(result: dict, as_json: bool, out: str | None, plot: str | None, markdown: bool = False) -> None:
    """Tables (or --json, or Markdown) on stdout, the JSON to --out, the plot to --plot."""
    from lnca_cli.bench_report import markdown_of, plot_of, tables_of

    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    if plot:
        image = plot_of(result)
        if image is None:
            fail(f"--plot: the {result['benchmark']} benchmark has tables only")
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        image.save(plot)
    if as_json:
        print(json.dumps(result))
    elif markdown:
        print(markdown_of(tables_of(result)), end="")
    else:
        console = Console(highlight=False)
        for table in tables_of(result):
            console.print(table)


def _trained(bench, model: str | None, tasks, offline: bool = False) -> dict:
    """Each task's model, loaded before any measuring; untrained ones are announced."""
    models = {task: bench.load_trained(model, task, offline) for task in dict.fromkeys(tasks)}
    for loaded in models.values():
        if "train_config" not in loaded.info:
            err.print(f"warning: model '{loaded.info['name']}' has no training record: its scores mean nothing")
    return models


def _run_bench(run):
    """Bad settings (ValueError) are usage errors: one line, exit 2."""
    try:
        return run()
    except ValueError as exc:
        fail(str(exc))


@bench_app.command("nca")
@friendly
def bench_nca(
    sizes: Annotated[str, typer.Option(help="Square input sides for inference (512 adds about 6 min on "
                                       "2 CPU cores).")] = NCA_SIZES,
    train_sizes: Annotated[str, typer.Option(help="Square input sides for one training step.")] = NCA_TRAIN_SIZES,
    steps: Annotated[Optional[int], typer.Option(help="Inference steps. Default: the model's (64).")] = None,
    train_steps: Annotated[int, typer.Option(help="Steps of the training step.")] = 32,
    batch: Annotated[int, typer.Option(help="Images per batch.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timed runs per model (the median is reported).")] = NCA_REPEATS,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 1,
    budget_mib: Annotated[float, typer.Option(help="Memory budget for the largest input.")] = NCA_BUDGET_MIB,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    threads: ThreadsOption = None,
    isolate: Annotated[bool, typer.Option(help="Measure CPU memory in a fresh process per measurement "
                                          "(exact); --no-isolate: in this one (quicker, for tests).")] = True,
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """Latent NCA vs pixel NCA (same rule, steps, update rate, batch): memory, latency, largest input."""
    bench = _bench_setup(threads)
    settings = bench.NCASettings(
        sizes=_numbers(sizes, "--sizes"), train_sizes=_numbers(train_sizes, "--train-sizes"), steps=steps,
        train_steps=train_steps, batch=batch, repeats=repeats, warmup=warmup, budget_mib=budget_mib, device=device,
        isolate=isolate)
    _bench_output(_run_bench(lambda: bench.bench_nca(settings, _bench_note)), as_json, out, plot)


@bench_app.command("speed")
@friendly
def bench_speed(
    megapixels: Annotated[str, typer.Option(help="Photograph sizes in megapixels.")] = SPEED_MEGAPIXELS,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name or .safetensors path. Default: "
                                                 "the denoise model, else a random one (timing only).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="NCA steps. Default: the model's.")] = None,
    devices: Annotated[str, typer.Option(help="auto (the CPU, and CUDA fp32 and fp16 when present) or a list: "
                                         "cpu,cuda.")] = "auto",
    threads: ThreadsOption = None,
    repeats: Annotated[int, typer.Option(help="Runs per size (the median is reported).")] = 1,
    image: Annotated[Optional[str], typer.Option(help="The photograph to resize to each size. Default: a smooth "
                                                 "random picture.")] = None,
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """The whole `lnca denoise` on 1, 12 and 50 MP photographs: seconds per megapixel and peak memory."""
    bench = _bench_setup(threads)
    result = _run_bench(lambda: bench.bench_speed(_numbers(megapixels, "--megapixels", float), model, steps,
                                                  devices, threads, repeats, image, _bench_note))
    _bench_output(result, as_json, out, plot)


@bench_app.command("train")
@friendly
def bench_train(
    batch: Annotated[int, typer.Option(help="Crops per batch.")] = 8,
    crop: Annotated[int, typer.Option(help="Crop side in pixels.")] = 64,
    steps: Annotated[int, typer.Option(help="NCA steps per iteration.")] = 16,
    repeats: Annotated[int, typer.Option(help="Timed iterations of each (the median is reported).")] = 5,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    threads: ThreadsOption = None,
    as_json: JsonOption = False, out: OutOption = None,
) -> None:
    """Training iterations per second, phase 2 (NCA) and phase 3 (end to end): the fast rule against the previous one."""
    bench = _bench_setup(threads)
    settings = bench.TrainSettings(batch=batch, crop=crop, steps=steps, repeats=repeats, device=device)
    _bench_output(_run_bench(lambda: bench.bench_train(settings, _bench_note)), as_json, out, None)


@bench_app.command("quality")
@friendly
def bench_quality(
    data: DataOption,
    degradations: Annotated[str, typer.Option(help="Comma-separated degradation specs.")] =
    QUALITY_DEGRADATIONS,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name or .safetensors path for every "
                                                 "degradation. Default: each task's model.")] = None,
    peers: Annotated[Optional[str], typer.Option(help="Only these peers (comma-separated names). Default: all.")]
    = None,
    steps: Annotated[Optional[int], typer.Option(help="NCA steps. Default: the model's.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
    threads: ThreadsOption = None,
    limit: LimitOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the degradations (image i uses seed + i).")] = 0,
    as_json: JsonOption = False, out: OutOption = None,
) -> None:
    """PSNR, SSIM and seconds per megapixel of lnca and of OpenCV, BM3D and scikit-image, per degradation."""
    bench = _bench_setup(threads)
    specs = tuple(spec.strip() for spec in degradations.split(",") if spec.strip())
    chosen = _run_bench(lambda: bench.choose_peers(peers))
    tasks = _run_bench(lambda: [bench.task_of(spec) for spec in specs])
    models = _trained(bench, model, tasks)
    result = _run_bench(lambda: bench.bench_quality(data, models, specs, chosen, steps, device, limit, seed,
                                                    _bench_note))
    _bench_output(result, as_json, out, None)


@bench_app.command("steps")
@friendly
def bench_steps(
    data: DataOption,
    task: TaskOption = "denoise",
    degradation: Annotated[Optional[str], typer.Option(help="Default by task: " + EVAL_DEFAULTS)]
    = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name or .safetensors path.")] = None,
    step_counts: Annotated[str, typer.Option(help="Step counts to compare.")] = STEP_COUNTS,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
    threads: ThreadsOption = None,
    limit: LimitOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the degradations (image i uses seed + i).")] = 0,
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """PSNR and time at 8 to 128 NCA steps, to choose --steps."""
    bench = _bench_setup(threads)
    loaded = _trained(bench, model, [task])[task]
    spec = degradation or get_task(task).eval_degradation
    result = _run_bench(lambda: bench.bench_steps(data, loaded, spec, _numbers(step_counts, "--step-counts"), device,
                                                  limit, seed, _bench_note))
    _bench_output(result, as_json, out, plot)


@bench_app.command("all")
@friendly
def bench_all(
    data: DataOption,
    threads: ThreadsOption = None,
    device: Annotated[str, typer.Option(help="Device for nca, quality and steps.")] = "cpu",
    limit: LimitOption = None,
    sizes: Annotated[str, typer.Option(help="nca: inference sides.")] = NCA_SIZES,
    train_sizes: Annotated[str, typer.Option(help="nca: training-step sides.")] = NCA_TRAIN_SIZES,
    budget_mib: Annotated[float, typer.Option(help="nca: memory budget for the largest input.")] = NCA_BUDGET_MIB,
    repeats: Annotated[int, typer.Option(help="nca: timed runs per model.")] = NCA_REPEATS,
    isolate: Annotated[bool, typer.Option(help="nca: CPU memory in a fresh process per measurement.")] = True,
    megapixels: Annotated[str, typer.Option(help="speed: photograph sizes in megapixels.")] = SPEED_MEGAPIXELS,
    devices: Annotated[str, typer.Option(help="speed: auto, or a list such as cpu,cuda.")] = "auto",
    degradations: Annotated[str, typer.Option(help="quality: degradation specs.")] =
    QUALITY_DEGRADATIONS,
    step_counts: Annotated[str, typer.Option(help="steps: step counts.")] = STEP_COUNTS,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="One model for every task (default: each "
                                                 "task's model).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="NCA steps for nca, speed and quality. Default: the "
                                                 "model's.")] = None,
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """Every benchmark in one run, as docs/BENCHMARKS.md shows them."""
    from lnca_cli.evaluate import image_files

    bench = _bench_setup(threads)
    specs = tuple(spec.strip() for spec in degradations.split(",") if spec.strip())
    tasks = _run_bench(lambda: [bench.task_of(spec) for spec in specs])
    models = _trained(bench, model, ["denoise", *tasks])  # before any measuring: fail fast
    settings = bench.NCASettings(sizes=_numbers(sizes, "--sizes"), train_sizes=_numbers(train_sizes, "--train-sizes"),
                                 steps=steps, repeats=repeats, budget_mib=budget_mib, device=device, isolate=isolate)
    source = _run_bench(lambda: str(image_files(data)[0]))  # speed resizes the first photograph
    result = _run_bench(lambda: bench.bench_all({
        "nca": lambda: bench.bench_nca(settings, _bench_note),
        "speed": lambda: bench.bench_speed(_numbers(megapixels, "--megapixels", float), model, steps, devices,
                                           threads, 1, source, _bench_note),
        "quality": lambda: bench.bench_quality(data, models, specs, bench.PEERS, steps, device, limit, 0,
                                               _bench_note),
        "steps": lambda: bench.bench_steps(data, models["denoise"], "gaussian:25",
                                           _numbers(step_counts, "--step-counts"), device, limit, 0, _bench_note),
    }, device))
    _bench_output(result, as_json, out, plot)


@bench_app.command("show")
@friendly
def bench_show(
    result_file: Annotated[Path, typer.Argument(help="A JSON file written by a bench command's --out.")],
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown tables, as in docs/BENCHMARKS.md.")] = False,
    plot: PlotOption = None,
) -> None:
    """Print a saved result's tables again, or as Markdown, or redraw its plot, without measuring anything."""
    from lnca_cli.bench_report import TABLES

    try:
        result = json.loads(result_file.read_text())
    except OSError as exc:
        fail(f"{result_file}: cannot read ({exc.strerror})")
    except (ValueError, UnicodeDecodeError):
        fail(f"{result_file}: not a JSON file")
    if not isinstance(result, dict) or result.get("benchmark") not in (*TABLES, "all"):
        fail(f"{result_file}: not a result written by lnca bench --out")
    _bench_output(result, False, None, plot, markdown)
