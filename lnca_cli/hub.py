"""Model weights: safetensors files with the config in their metadata, and where to find them.

Loading never unpickles: only safetensors are read. Published models are listed in the registry,
`weights/models.json`; a model named there is used from the package's own `weights/` folder, else
from the Hugging Face cache, else downloaded once with huggingface_hub, and every one of these files
is checked against the registry's sha256 before it is used.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from lnca_cli import __version__
from lnca_cli.errors import LncaError, first_line
from lnca_cli.files import atomic_write
from lnca_cli.tasks import TASKS

if TYPE_CHECKING:  # torch and the model load only when weights do: `lnca models list` starts fast
    import torch

    from lnca_cli.model import LNCA

CONFIG_KEY = "lnca_config"
ARCH_KEY = "lnca_arch"  # which architecture the config describes (model.ARCHITECTURES); files without one are "lnca"


class WeightsError(LncaError):
    """A weights file that cannot be found or used; the message is one clear line."""


def save_weights(model: LNCA, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a model as safetensors; the config and `metadata` (strings) go in the header. Atomic."""
    from safetensors.torch import save

    header = {ARCH_KEY: model.arch, CONFIG_KEY: json.dumps(model.config.to_dict()), **(metadata or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata=header)
    atomic_write(path, lambda file: file.write(data))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a valid safetensors weights file ({first_line(exc)})") from None


def load_weights(path: str | os.PathLike) -> tuple[LNCA, dict[str, str]]:
    """Rebuild the model from a weights file; returns it in eval mode with its metadata."""
    from safetensors.torch import load_file

    from lnca_cli.model import ARCHITECTURES

    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata:
        raise WeightsError(f"{path}: no '{CONFIG_KEY}' in the file's metadata; not an lnca weights file")
    arch = metadata.get(ARCH_KEY, "lnca")
    if arch not in ARCHITECTURES:
        raise WeightsError(f"{path}: architecture '{arch}' is unknown to lnca {__version__} (it knows "
                           f"{', '.join(ARCHITECTURES)}); a newer lnca may load it")
    model_class, config_class = ARCHITECTURES[arch]
    try:
        config = config_class.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, TypeError, OverflowError) as exc:  # (OverflowError: a number such as 1e400)
        raise WeightsError(f"{path}: bad model config ({first_line(exc)})") from None
    except RecursionError:
        raise WeightsError(f"{path}: bad model config (nested too deeply to read)") from None
    size, needed = Path(path).stat().st_size, _model_bytes(model_class, config)
    if needed > size:  # the tensors are in the file: a config that needs more describes other weights
        raise WeightsError(f"{path}: weights do not match the model config: it describes {needed:,} bytes of "
                           f"tensors, but the file has {size:,} bytes")
    model = model_class(config)
    state = load_file(str(path))
    _check_state(path, model, state)
    model.load_state_dict(state)
    return model.eval(), metadata


def _model_bytes(model_class, config) -> int:
    """Bytes of the tensors of the model a config describes, counted without allocating them."""
    import torch

    with torch.device("meta"):
        return sum(t.numel() * t.element_size() for t in model_class(config).state_dict().values())


def _check_state(path, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Name what differs between the file's tensors and the architecture its config describes, and
    refuse tensors of the wrong kind (integers for floats) or that hold NaN or infinity."""
    import torch

    reference = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    common = sorted(set(expected) & set(found))
    wrong = [k for k in common if expected[k] != found[k]]
    wrong_kind = [k for k in common if state[k].is_floating_point() != reference[k].is_floating_point()]
    not_finite = [k for k in common if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if extra:
        problems.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    if wrong:
        k = wrong[0]
        problems.append(f"{k} has shape {found[k]}, config expects {expected[k]}")
    if wrong_kind:
        k = wrong_kind[0]
        problems.append(f"{k} holds {state[k].dtype}, config expects {reference[k].dtype}")
    if problems:
        raise WeightsError(f"{path}: weights do not match the model config: {'; '.join(problems)}")
    if not_finite:
        raise WeightsError(f"{path}: weights hold NaN or infinity ({', '.join(not_finite[:3])}"
                           f"{' ...' if len(not_finite) > 3 else ''}); the file is damaged or its training diverged")


# ---------------------------------------------------------------- the registry of published models

#: Bundled weights and the registry: inside the package when installed from a wheel, beside it in a source checkout.
BUNDLED_DIRS = (Path(__file__).parent / "weights", Path(__file__).parent.parent / "weights")
REGISTRY_FILE = "models.json"

@dataclass(frozen=True)
class ModelEntry:
    """One published model. `sha256` and `size` stay None until its weights file is registered."""

    name: str
    task: str
    repo_id: str  # on the Hugging Face Hub
    revision: str  # a tag, so that a download is pinned
    filename: str  # in the repo, and in the bundled weights/ folder
    sha256: str | None = None
    size: int | None = None
    recipe: str = ""  # how it was trained, or where that is written
    quality: dict = field(default_factory=dict)  # measured scores, e.g. {"psnr_db": 29.1}


@dataclass(frozen=True)
class Registry:
    path: Path
    models: dict[str, ModelEntry]
    defaults: dict[str, str]  # task -> name of its default model

    def entry(self, name: str) -> ModelEntry:
        """A model by its name, or a task's default model by the task's name."""
        name = self.defaults.get(name, name)
        if name not in self.models:
            raise WeightsError(f"unknown model '{name}' (models: {', '.join(self.models)}; or a task: "
                               f"{', '.join(self.defaults)}); or pass a .safetensors path")
        return self.models[name]


def registry_path() -> Path:
    for folder in BUNDLED_DIRS:
        if (folder / REGISTRY_FILE).is_file():
            return folder / REGISTRY_FILE
    raise WeightsError(f"no {REGISTRY_FILE} in {' or '.join(map(str, BUNDLED_DIRS))}; the installation is incomplete")


def load_registry() -> Registry:
    """Read and check `models.json`: {"defaults": {task: name}, "models": {name: fields}}."""
    path = registry_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = {name: ModelEntry(name=name, **fields) for name, fields in data["models"].items()}
        registry = Registry(path, models, dict(data["defaults"]))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise WeightsError(f"{path}: not a valid model registry ({first_line(exc)})") from None
    _check_registry(registry)
    return registry


def _check_registry(registry: Registry) -> None:
    models = registry.models.values()
    problems = [f"model '{e.name}' has unknown task '{e.task}'" for e in models if e.task not in TASKS]
    problems += [f"a default for unknown task '{task}'" for task in registry.defaults if task not in TASKS]
    for task, name in registry.defaults.items():  # a task may have no published model yet: no default
        default = registry.models.get(name)
        if default is None or default.task != task:
            problems.append(f"the default model of task '{task}' is not a {task} model in the registry")
    filenames = [e.filename for e in models]
    problems += [f"two models share the file {f}" for f in sorted(set(filenames)) if filenames.count(f) > 1]
    if problems:
        raise WeightsError(f"{registry.path}: {'; '.join(problems)}")


def save_registry(registry: Registry) -> None:
    models = {name: {k: v for k, v in asdict(e).items() if k != "name"} for name, e in registry.models.items()}
    text = json.dumps({"defaults": registry.defaults, "models": models}, indent=2) + "\n"
    atomic_write(registry.path, lambda file: file.write(text.encode("utf-8")))


def register(path: str | os.PathLike, name: str, task: str | None = None) -> ModelEntry:
    """Record a weights file's name, sha256 and size in the registry (for maintainers, when weights
    are published). A new model needs its task and takes the repo and revision of the task's default."""
    path = Path(path)
    _, metadata = load_weights(path)  # refuses anything that is not a usable lnca weights file
    registry = load_registry()
    old = registry.models.get(name)
    task = task or (old.task if old else None)
    if task not in TASKS:
        raise WeightsError(f"give the task of model '{name}': one of {', '.join(TASKS)}")
    if metadata.get("task", task) != task:
        raise WeightsError(f"{path} was trained for task '{metadata['task']}', not '{task}'")
    facts = {"task": task, "filename": path.name, "sha256": sha256_of(path), "size": path.stat().st_size}
    if old is None:
        base = registry.models.get(registry.defaults.get(task, ""), next(iter(registry.models.values())))
        entry = ModelEntry(name, repo_id=base.repo_id, revision=base.revision, recipe="weights/README.md", **facts)
    else:
        entry = replace(old, **facts)
    registry.models[name] = entry
    _check_registry(registry)
    save_registry(registry)
    return entry


# ---------------------------------------------------------------- where a model's file is, and checking it


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_cache() -> Path:
    """The Hugging Face cache folder. Read from the environment at each call: huggingface_hub reads
    HF_HUB_CACHE and HF_HOME once, when it is imported."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_endpoint() -> str:
    """HF_ENDPOINT read now (huggingface_hub reads it at import), else the library's default."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT


def hub_offline() -> bool:
    """HF_HUB_OFFLINE read now, with huggingface_hub's reading of true values."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def bundled_file(entry: ModelEntry) -> Path | None:
    return next((folder / entry.filename for folder in BUNDLED_DIRS if (folder / entry.filename).is_file()), None)


def cached_file(entry: ModelEntry) -> Path | None:
    """The file in the Hugging Face cache for the entry's pinned revision, without any network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.repo_id, entry.filename, cache_dir=str(hub_cache()), revision=entry.revision)
    return Path(found) if isinstance(found, str) else None


def locate(entry: ModelEntry) -> tuple[str, Path | None]:
    """Where the model's file is: ("bundled", path), ("cached", path) or ("remote", None). Not verified."""
    bundled = bundled_file(entry)
    if bundled is not None:
        return "bundled", bundled
    cached = cached_file(entry)
    return ("cached", cached) if cached is not None else ("remote", None)


def matches(entry: ModelEntry, path: Path) -> bool:
    """Whether the file is the one the registry names: same sha256 (never, before it is registered)."""
    return entry.sha256 is not None and sha256_of(path) == entry.sha256


def check_file(entry: ModelEntry, path: Path) -> None:
    """Raise unless the file is the one the registry names."""
    if entry.sha256 is None:
        raise WeightsError(f"{path}: model '{entry.name}' has no sha256 in the registry, so the file cannot be "
                           f"checked; maintainers: lnca models register {path} --name {entry.name}")
    if not matches(entry, path):
        raise WeightsError(f"{path}: sha256 does not match model '{entry.name}' in the registry "
                           f"(a corrupted or tampered file); it is not used")


def _remove_cached(path: Path) -> None:
    """Delete a cached file: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _how_to_get(entry: ModelEntry) -> str:
    return (f"get it with `lnca models download {entry.name}` while online, or copy {entry.filename} "
            f"to this machine and pass its path with --model")


def fetch(entry: ModelEntry, offline: bool = False) -> Path:
    """The model's verified local file: bundled, else cached, else downloaded now (never when
    offline or HF_HUB_OFFLINE is set). A bundled file that fails its check is refused; a cached one
    is deleted, then downloaded again."""
    offline = offline or hub_offline()
    bundled = bundled_file(entry)
    if bundled is not None:
        check_file(entry, bundled)
        return bundled
    cached = cached_file(entry)
    if cached is not None and entry.sha256 is not None:  # (a model not published yet has no cache to judge)
        if matches(entry, cached):
            return cached
        _remove_cached(cached)
        if offline:
            raise WeightsError(f"{cached}: model '{entry.name}' failed its sha256 check and was removed from the "
                               f"cache; {_how_to_get(entry)}")
    return _download(entry, offline)


def _download(entry: ModelEntry, offline: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    if entry.sha256 is None:
        raise WeightsError(f"model '{entry.name}' is not published yet (no sha256 in the registry); "
                           f"pass a .safetensors file with --model")
    endpoint = hub_endpoint()
    try:
        path = Path(hf_hub_download(entry.repo_id, entry.filename, revision=entry.revision,
                                    cache_dir=str(hub_cache()), endpoint=endpoint, local_files_only=offline))
    except LocalEntryNotFoundError as exc:  # offline, or no connection, and not in the cache
        problem = "is not available offline" if offline else \
            f"could not be downloaded from {endpoint} ({first_line(exc.__cause__ or exc)})"
        raise WeightsError(f"model '{entry.name}' {problem}: it is neither bundled nor in the cache "
                           f"{hub_cache()}; {_how_to_get(entry)}") from None
    except (HfHubHTTPError, OSError) as exc:  # an HTTP error (404...), or a truncated download
        reason = " ".join([line for line in str(exc).splitlines() if line.strip()][:2])
        raise WeightsError(f"model '{entry.name}': download of {entry.filename} from {entry.repo_id} at "
                           f"{entry.revision} failed: {reason}") from None
    if not matches(entry, path):
        _remove_cached(path)
        raise WeightsError(f"model '{entry.name}': the downloaded {entry.filename} does not match its sha256 in the "
                           f"registry (corrupted or tampered); it was deleted and is not used")
    return path


# ---------------------------------------------------------------- finding and loading a model


def registry_name(model: LNCA) -> str:
    """The registry's name of a model loaded by name or task (denoise -> denoise-v5), else the name it was
    loaded by (a path), or "unnamed" for one built in code."""
    info = getattr(model, "info", {})
    name = info.get("name", "unnamed")
    try:
        entry = load_registry().entry(name)
    except WeightsError:  # a path, or no registry
        return name
    return entry.name if Path(info.get("path", "")).name == entry.filename else name


def find_model(name_or_path: str, offline: bool = False) -> Path:
    """A local .safetensors path (used as it is), or a registry model by name or task, verified.
    A folder that happens to share a model's name (./denoise) does not hide the model."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise WeightsError(f"{name_or_path}: no such weights file")
        return path
    return fetch(load_registry().entry(name_or_path), offline)


def load_model(name_or_path: str | None = None, task: str = "denoise", offline: bool = False) -> LNCA:
    """Load a model by name or path (default: the task's model); `model.info` holds its metadata."""
    if task not in TASKS:
        raise WeightsError(f"unknown task '{task}'; expected one of {', '.join(TASKS)}")
    if name_or_path is None and task not in load_registry().defaults:
        raise WeightsError(f"task '{task}' has no published model yet: train one (lnca train --task {task}) and "
                           f"pass it with --model")
    path = find_model(name_or_path or task, offline)
    model, metadata = load_weights(path)
    model.info = {"name": name_or_path or task, "path": str(path), **metadata}
    return model
