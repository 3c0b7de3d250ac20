"""`lnca eval`'s table: a report's per-image scores and their mean, as Rich draws them. Part of the CLI,
so that lnca_cli.evaluate never imports rich."""
from __future__ import annotations

import dataclasses

from rich.table import Table

from lnca_cli.ensemble import views_averaged
from lnca_cli.evaluate import EvalReport


def format_table(report: EvalReport) -> Table:
    """Per-image scores and, in bold, their mean; below, the quality targets that apply (targets.py)."""
    views = views_averaged(report.ensemble)
    table = Table(title=f"{report.model} on {report.degradation}, {report.steps} steps{views}, {report.backend}")
    table.add_column("image")
    for header in ("input PSNR", "input SSIM", "PSNR", "SSIM", "bias R/G/B", "mottle", "seconds"):
        table.add_column(header, justify="right")
    for score in report.images:
        table.add_row(score.name, *_cells(dataclasses.asdict(score)))
    table.add_section()
    table.add_row("mean", *_cells(report.mean()), style="bold")
    if report.targets:
        table.caption = "\n".join(target.line() for target in report.targets)
    return table


def _cells(scores: dict) -> list[str]:
    """Table cells for `scores`: dB to 2 places, SSIM to 4, the bias and the mottle in levels to 1 and 2,
    seconds to 2."""
    bias = "/".join(f"{scores[key]:+.1f}" for key in ("bias_r", "bias_g", "bias_b"))
    return [f"{scores['psnr_input']:.2f}", f"{scores['ssim_input']:.4f}", f"{scores['psnr']:.2f}",
            f"{scores['ssim']:.4f}", bias, f"{scores['mottle']:.2f}", f"{scores['seconds']:.2f}"]
