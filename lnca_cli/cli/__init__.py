"""The `lnca` command: a thin Typer + Rich layer over lnca_cli.api. No tensor maths here. One module
per group of commands; _options.py holds what they share.

Exit codes: 0 all done (or skipped), 1 some files failed, 2 bad usage or settings, 128 + N stopped
by signal N (130 SIGINT, 143 SIGTERM). Human messages go to stderr; --json lines go to stdout (to stderr when the image itself does).
"""
from __future__ import annotations

from typing import Annotated

import typer

from lnca_cli import __version__
from lnca_cli.cli import bench, eval, export, info, models, restore, train
from lnca_cli.cli._options import STATE

app = typer.Typer(
    help="Restore photographs (denoise, deblur) with Latent Neural Cellular Automata.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


app.command("denoise")(restore.denoise)
app.command("deblur")(restore.deblur)
app.command("restore")(restore.restore)
app.add_typer(models.app, name="models")
app.command("info")(info.info)
app.command("train")(train.train)
app.command("eval")(eval.eval_command)
app.command("export")(export.export)
app.add_typer(bench.app, name="bench")
