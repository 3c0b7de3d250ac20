"""`lnca eval`: degrade clean images, restore them and score the results."""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from lnca_cli.cli._options import (EVAL_DEFAULTS, BackendOption, DataOption, DegradeSeedOption, DeviceOption,
                                   EnsembleOption, GraphOption, LimitOption, ModelOption, StepsOption, TaskOption,
                                   ThreadsOption, fail, friendly, use_threads)
from lnca_cli.tasks import get_task


@friendly
def eval_command(
    data: DataOption,
    task: TaskOption = "denoise",
    noise: Annotated[Optional[str], typer.Option("--noise", "--degradation", help="gaussian:SIGMA, poisson:PEAK, "
                                                 "masked:P, motion:LENGTH[:ANGLE], defocus:SIGMA. Default by "
                                                 "task: " + EVAL_DEFAULTS)] = None,
    model: ModelOption() = None,
    steps: StepsOption = None,
    ensemble: EnsembleOption = 1,
    device: DeviceOption = "auto",
    backend: BackendOption = "torch",
    graph: GraphOption = None,
    seed: DegradeSeedOption = 0,
    limit: LimitOption = None,
    save: Annotated[Optional[str], typer.Option(help="Write degraded | restored | clean PNGs here.")] = None,
    oracle: Annotated[bool, typer.Option(help="Score the autoencoder's ceiling instead: decode the clean image's "
                                         "latent with the degraded image's skip (no NCA). A ceiling only for a "
                                         "model trained in the paper's phases: after end-to-end training the "
                                         "decoder no longer expects clean latents.")] = False,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
) -> None:
    """Degrade clean images with a fixed seed, restore them, and score PSNR/SSIM against the originals."""
    use_threads(threads)
    from rich.console import Console

    from lnca_cli.api import RestoreSettings, prepare
    from lnca_cli.cli.eval_report import format_table
    from lnca_cli.evaluate import evaluate

    settings = RestoreSettings(steps=steps, device=device, backend=backend, graph=graph, ensemble=ensemble)
    loaded = prepare(task, model, settings)
    spec = noise or get_task(task).eval_degradation
    try:
        report = evaluate(loaded, data, spec, steps=steps, device=device, seed=seed, limit=limit, save=save,
                          oracle=oracle, backend=backend, graph=graph, ensemble=ensemble)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        Console(highlight=False).print(format_table(report))
