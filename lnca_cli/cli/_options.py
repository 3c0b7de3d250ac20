"""What more than one command shares: the one place that turns an error into one line and an exit code,
and the options that several commands take, each defined once."""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from lnca_cli.errors import Interrupted, LncaError, first_line, printable
from lnca_cli.tasks import TASKS

err = Console(stderr=True, highlight=False, markup=False, emoji=False)  # file names print as they are
STATE = {"debug": False}


def print_error(message: str) -> None:
    err.print(Text("error:", style="red"), message, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    print_error(message)
    raise typer.Exit(code)


def say_stopping(then: str):
    """The notice for Stop.on_signals: '<signal>: stopping <then> (again to stop now)', written raw to
    stderr, since it runs in a signal handler and Python's buffered streams are not reentrant."""

    def notify(reason: str) -> None:
        with contextlib.suppress(OSError):
            os.write(2, f"{reason}: stopping {then} (again to stop now)\n".encode())

    return notify


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


TaskOption = Annotated[str, typer.Option("--task", "-t", metavar="|".join(TASKS),  # checked by tasks.get_task
                                         help="; ".join(f"{t.name}: {t.help}" for t in TASKS.values()) + ".")]
EVAL_DEFAULTS = ", ".join(f"{t.eval_degradation} ({t.name})" for t in TASKS.values()) + "."
ThreadsOption = Annotated[Optional[int], typer.Option(help="CPU threads. Default: the physical cores that other "
                                                      "processes leave free (lnca info shows how many).",
                                                      show_default=False)]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]  # each command has its default
StepsOption = Annotated[Optional[int], typer.Option(help="NCA steps. Default: the model's.")]
EnsembleOption = Annotated[int, typer.Option(metavar="1|2|4|8", help="Restore each image in N views (rotations, "
                                             "mirror images) and average them: better (denoise: about +0.2 dB at "
                                             "8), N times the time.")]  # checked by ensemble.check_ensemble
BackendOption = Annotated[str, typer.Option(
    metavar="torch|onnxruntime|openvino", help='What computes each tile (tiling, I/O and outputs are the same): torch, '
    'or the model\'s ONNX graph in onnxruntime (pip install "lnca\\[onnx]") or openvino (pip install '
    '"lnca\\[openvino]"), on the CPU.')]  # checked by backends.check_backend; \\[: Rich would take [onnx] for markup
GraphOption = Annotated[Optional[str], typer.Option(
    "--onnx", metavar="FILE.onnx", help="The graph for --backend onnxruntime or openvino, from lnca export (of the "
    "same model and steps). Default: exported from the model as the run starts.", show_default=False)]
RayAddressOption = Annotated[Optional[str], typer.Option(help="--engine ray: the Ray cluster to join: auto, "
                                                         "HOST:PORT or ray://HOST:PORT. Default: a local Ray instance on this "
                                                         "machine's cores.", show_default=False)]
DataOption = Annotated[str, typer.Option(help="Folder of clean images, e.g. /path/to/Kodak24.")]
LimitOption = Annotated[Optional[int], typer.Option(help="Only the first N images.")]
DegradeSeedOption = Annotated[int, typer.Option(help="Seed of the degradations (image i uses seed + i).")]


def ModelOption(default: str = "the task's model"):  # noqa: N802 - it names a type, as Annotated does
    """--model/-m; its help says what the command uses without it."""
    return Annotated[Optional[str], typer.Option("--model", "-m", help=f"Model name or .safetensors path. "
                                                 f"Default: {default}.")]


def use_threads(threads: int | None) -> int:
    """Apply --threads (bad values are usage errors); returns the count in use."""
    from lnca_cli.devices import set_threads

    if threads is not None and threads < 1:
        fail(f"--threads must be at least 1, got {threads}")
    return set_threads(threads)
