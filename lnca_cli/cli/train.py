"""`lnca train`: train a model on your own photos, with a progress bar and resumable checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lnca_cli.cli._options import (DeviceOption, TaskOption, ThreadsOption, err, fail, friendly, say_stopping,
                                   use_threads)
from lnca_cli.recipe import PIXEL_LOSSES, TrainConfig
from lnca_cli.tasks import get_task


def RecipeOption(field: str, help: str, kind: type = int):  # noqa: N802 - it names a type, as Annotated does
    """An option that overrides one field of the training recipe; its help shows the recipe's default
    (and the paper preset's, where that differs)."""
    default, paper = getattr(TrainConfig(), field), getattr(TrainConfig.paper("denoise", 400), field)
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    paper = {"ae_iterations": "10 epochs", "nca_iterations": "10 epochs", "val_every": "an epoch"}.get(field, paper)
    note = "" if paper == default else f" (--preset paper: {paper})"
    return Annotated[Optional[kind], typer.Option(help=f"{help} Default: {shown}{note}.", show_default=False)]


@friendly
def train(
    data: Annotated[str, typer.Option(help="Folder of clean photos to train on (sub-folders included).")],
    out: Annotated[str, typer.Option(help="Where to write the best weights (.safetensors).")],
    task: TaskOption = "denoise",
    val: Annotated[Optional[str], typer.Option(help="Validation photos. Default: a fixed 5% of --data.")] = None,
    preset: Annotated[str, typer.Option(help="Architecture: wide-dw (default), wide-dw-256 (its rule twice as "
                                        "wide), wide-dw-deep and wide-dw-deep6 (two and six more decoder blocks), "
                                        "wide-dw-deep6x4 (six blocks four times wider inside), wide-dw-deep6-ae32 (six "
                                        "blocks on a half-resolution stream twice as wide), wide-dw-deep8-ae64 (eight "
                                        "on one four times as wide; --init grows a smaller wide-dw model into any "
                                        "of them), wide or paper. 'paper' also "
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
    freeze_autoencoder: RecipeOption("freeze_autoencoder", "Phase 3 trains the NCA alone; the encoder and "
                                     "decoder stay as they are.", bool) = None,
    residual: RecipeOption("residual", "With --init: the decoder learns a correction added to the degraded "
                           "input instead of the image, and the model starts as the identity (it returns its "
                           "input), so training starts from doing no harm.", bool) = None,
    degrade_before_crop: RecipeOption("degrade_before_crop", "Cut each crop larger by the degradation's reach "
                                      "(a blur's radius), degrade it, then cut it to --crop: a blur then reads "
                                      "the photo around the crop, as in a whole blurred photo, not reflections.",
                                      bool) = None,
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
    device: DeviceOption = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16: bf16 runs the matmuls and convs in bf16 "
                                           "(weights, optimiser and norms stay fp32), faster on a GPU and on a "
                                           "CPU with AMX. auto: bf16 on a CUDA GPU, fp32 elsewhere.")] = "auto",
    log: Annotated[Optional[str], typer.Option(help="Append one JSON line per batch here.")] = None,
    plot: Annotated[Optional[str], typer.Option(help="Draw the loss curves to this PNG at the end (needs --log).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed for crops, degradations and initialisation.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out even if it is not an lnca weights file.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Train a model on your own photos (both phases of the paper), with checkpoints you can resume."""
    from dataclasses import replace

    from lnca_cli.api import Stop
    from lnca_cli.devices import DeviceError, keep_freed_memory, resolve_device
    from lnca_cli.errors import SettingsError
    from lnca_cli.model import PRESETS
    from lnca_cli.train import list_images, plot_log, train as run_training, training_precision

    keep_freed_memory()
    use_threads(threads)
    get_task(task)
    if preset not in PRESETS:
        raise SettingsError(f"unknown preset '{preset}'; expected one of {', '.join(PRESETS)}")
    try:
        target = resolve_device(device)
        device_name, precision = str(target), training_precision(target, precision)
    except DeviceError as exc:
        raise SettingsError(str(exc)) from None
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
                     max_steps=max_steps, val_every=val_every, freeze_autoencoder=freeze_autoencoder,
                     residual=residual, degrade_before_crop=degrade_before_crop)
    config = replace(config, seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    if init and not config.e2e_iterations:
        raise SettingsError("--init trains end to end: give --e2e-iterations too")
    if config.residual and not init:
        raise SettingsError("--residual starts from a trained model: give --init too")
    if not 1 <= config.min_steps <= config.max_steps:
        raise SettingsError(f"--min-steps and --max-steps must satisfy 1 <= min <= max, got {config.min_steps} "
                            f"and {config.max_steps}")
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

    stop = Stop()
    with progress, stop.on_signals(say_stopping("after the current batch, saving the checkpoint")):
        try:
            result = run_training(data, out, config, val=val, checkpoint=checkpoint, minutes=minutes,
                                  device=device_name, log_path=log, on_iteration=on_iteration,
                                  note=lambda message: progress.console.print(message, style="dim", soft_wrap=True),
                                  autoencoder=autoencoder, init=init, should_stop=lambda: bool(stop.signal),
                                  precision=precision, metadata={"hardware": device_name, "precision": precision,
                                                                 **({"init": init} if init else {})})
        except ValueError as exc:  # unusable photos or autoencoder: the user's to fix
            fail(str(exc))
    if plot:
        plot_log(log, plot)
    best = result["val_psnr"]
    if not result["finished"]:
        written = f"; the best weights so far ({best:.2f} dB) are in {out}" if result["val_psnr_by_steps"] else ""
        why = f"stopped, {stop.reason}" if stop.signal else f"stopped after {minutes} min"
        resume = f"resume with the same command (checkpoint {checkpoint})" if checkpoint else "no --checkpoint to resume from"
        err.print(f"{why}; {resume}{written}", soft_wrap=True)
        if stop.signal:
            raise typer.Exit(128 + stop.signal)
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
