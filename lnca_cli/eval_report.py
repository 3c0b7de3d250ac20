"""`lnca eval`'s table: a report's per-image scores and their mean, as Rich draws them. Part of the CLI,
so that lnca_cli.evaluate never imports rich."""
from __future__ import annotations

import dataclasses

from rich.table import Table

from lnca_cli.evaluate import METRICS, EvalReport


def format_table(report: EvalReport) -> Table:
    """Per-image scores and, in bold, their mean."""
    table = Table(title=f"{report.model} on {report.degradation}, {report.steps} steps")
    table.add_column("image")
    for header in ("input PSNR", "input SSIM", "PSNR", "SSIM", "seconds"):
        table.add_column(header, justify="right")
    for score in report.images:
        table.add_row(score.name, *_cells(dataclasses.asdict(score)))
    table.add_section()
    table.add_row("mean", *_cells(report.mean()), style="bold")
    return table


def _cells(scores: dict) -> list[str]:
    """Table cells for the METRICS in `scores`: dB to 2 places, SSIM to 4, seconds to 2."""
    places = {"psnr_input": 2, "ssim_input": 4, "psnr": 2, "ssim": 4, "seconds": 2}
    return [f"{scores[key]:.{places[key]}f}" for key in METRICS]
