"""lnca: restore photographs with Latent Neural Cellular Automata.

    import lnca_cli
    model = lnca_cli.load_model("denoise")
    restored = lnca_cli.restore(image, model)            # torch (C, H, W) in [0, 1] or numpy array
    lnca_cli.restore_file(lnca_cli.Job("in.jpg", "out.jpg"), model, lnca_cli.RestoreSettings())

The names below are imported on first use, so `import lnca_cli` (and `lnca --version`) does not
load torch.
"""
import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "FileResult": "lnca_cli.api", "Job": "lnca_cli.api", "RestoreSettings": "lnca_cli.api", "Stop": "lnca_cli.api",
    "restore_file": "lnca_cli.api", "restore_files": "lnca_cli.api",
    "restore": "lnca_cli.engine",
    "open_backend": "lnca_cli.backends",
    "Workers": "lnca_cli.distributed", "restore_dataset": "lnca_cli.distributed",
    "restore_files_on_ray": "lnca_cli.distributed",
    "load_model": "lnca_cli.hub",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lnca_cli' has no attribute '{name}'")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
