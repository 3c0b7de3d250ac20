"""Model weights: safetensors files with the config in their metadata, and where to find them.

Loading never unpickles: only safetensors are read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lnca_cli.model import LNCA, LNCAConfig

CONFIG_KEY = "lnca_config"


class WeightsError(Exception):
    """A weights file that cannot be found or used; the message is one clear line."""


def save_weights(model: LNCA, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a model as safetensors; the config and `metadata` (strings) go in the header. Atomic."""
    path = Path(path)
    header = {CONFIG_KEY: json.dumps(model.config.to_dict()), **(metadata or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(state, str(tmp), metadata=header)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a valid safetensors weights file ({_first_line(exc)})") from None


def load_weights(path: str | os.PathLike) -> tuple[LNCA, dict[str, str]]:
    """Rebuild the model from a weights file; returns it in eval mode with its metadata."""
    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata:
        raise WeightsError(f"{path}: no '{CONFIG_KEY}' in the file's metadata; not an lnca weights file")
    try:
        config = LNCAConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: bad model config ({_first_line(exc)})") from None
    model = LNCA(config)
    state = load_file(str(path))
    _check_state(path, model, state)
    model.load_state_dict(state)
    return model.eval(), metadata


def _check_state(path, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Name what differs between the file's tensors and the architecture its config describes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if extra:
        problems.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    if wrong:
        k = wrong[0]
        problems.append(f"{k} has shape {found[k]}, config expects {expected[k]}")
    if problems:
        raise WeightsError(f"{path}: weights do not match the model config: {'; '.join(problems)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------- finding a model by name or path

#: Bundled weights: inside the package when installed from a wheel, beside it in a source checkout.
BUNDLED_DIRS = (Path(__file__).parent / "weights", Path(__file__).parent.parent / "weights")

#: The default model of each task is the model named after it.
TASKS = ("denoise", "deblur", "denoise-masked")


def bundled_models() -> dict[str, Path]:
    """Names of the weights files shipped with the package."""
    found: dict[str, Path] = {}
    for folder in BUNDLED_DIRS:
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else ():
            found.setdefault(path.stem, path)
    return found


def find_model(name_or_path: str) -> Path:
    """A local .safetensors path, or the name of a bundled model."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise WeightsError(f"{name_or_path}: no such weights file")
        return path
    bundled = bundled_models()
    if name_or_path in bundled:
        return bundled[name_or_path]
    known = ", ".join(sorted(bundled)) or "none"
    raise WeightsError(f"unknown model '{name_or_path}' (bundled models: {known}); or pass a .safetensors path")


def load_model(name_or_path: str | None = None, task: str = "denoise") -> LNCA:
    """Load a model by name or path (default: the task's model); `model.info` holds its metadata."""
    if task not in TASKS:
        raise WeightsError(f"unknown task '{task}'; expected one of {', '.join(TASKS)}")
    path = find_model(name_or_path or task)
    model, metadata = load_weights(path)
    model.info = {"name": name_or_path or task, "path": str(path), **metadata}
    return model
