"""`lnca models`: list, download, check and register the pretrained models."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from lnca_cli.cli._options import err, fail, friendly, print_error
from lnca_cli.errors import printable

app = typer.Typer(help="Pretrained models: list, download, check. A model is used from the package, else "
                  "from the Hugging Face cache, else downloaded once.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


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


def model_location(entry) -> tuple[str, Path | None]:
    """Where a model's file is, for people: bundled, cached, remote, or unpublished (no sha256 yet)."""
    from lnca_cli.hub import locate

    where, path = locate(entry)
    return ("unpublished" if where == "remote" and entry.sha256 is None else where), path


@app.command("list")
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
        table.add_row(entry.name, entry.task, default, _size(entry.size), _quality(entry.quality),
                      model_location(entry)[0])
    Console(highlight=False).print(table)


@app.command("download")
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


@app.command("info")
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
    where, path = model_location(entry)
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


@app.command("verify")
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


@app.command("path")
@friendly
def models_path(name: Annotated[str, typer.Argument(help="Model name, or a task for its default model.")]) -> None:
    """Print the local file of a model (checked; never downloads), for scripts."""
    from lnca_cli.hub import fetch, load_registry, locate

    entry = load_registry().entry(name)
    if locate(entry)[1] is None:
        fail(f"model '{entry.name}' is neither bundled nor cached here; get it with `lnca models download "
             f"{entry.name}`", 1)
    print(fetch(entry, offline=True))


@app.command("register")
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
