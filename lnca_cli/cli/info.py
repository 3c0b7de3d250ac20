"""`lnca info`: versions, the device and precision lnca would use, and the models."""
from __future__ import annotations

import platform

from lnca_cli import __version__
from lnca_cli.cli._options import friendly
from lnca_cli.cli.models import model_location


@friendly
def info() -> None:
    """Versions, the device lnca would use, and the models available."""
    import torch

    from lnca_cli.devices import (PHYSICAL_CORES, cpu_has_bf16, default_threads, resolve_device, resolve_precision,
                                  usable_cpus)
    from lnca_cli.hub import load_registry

    device = resolve_device("auto")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"lnca {__version__}, torch {torch.__version__}, Python {platform.python_version()}")
    print(f"device: {device} ({name})")
    print(f"precision: auto is {resolve_precision(device)} here" + (
        " (the CPU has bf16 arithmetic)" if device.type == "cpu" and cpu_has_bf16() else ""))
    print(f"threads: {default_threads()} by default ({PHYSICAL_CORES} physical cores, {usable_cpus()} CPUs usable, "
          f"less those other processes keep busy)")
    _backends()
    print("models (lnca models list):")
    for entry in load_registry().models.values():
        where, path = model_location(entry)
        print(f"  {entry.name:18} task={entry.task:15} {path or where}")


def _backends() -> None:
    """The back ends installed (--backend), and why the default is torch."""
    from lnca_cli.backends import DEFAULT_BACKEND, installed, openvino_has_bf16
    from lnca_cli.export import EXTRA

    shown = []
    for name, version in installed().items():
        if version is None:
            shown.append(f"{name} not installed ({EXTRA[name]})")
        else:
            bf16 = name == "openvino" and openvino_has_bf16()
            shown.append(f"{name} {version}" + (" (bf16 on this CPU)" if bf16 else ""))
    print(f"back ends: {'; '.join(shown)}")
    print(f"  --backend is {DEFAULT_BACKEND} unless given (no auto): on the CPU measured, an AMD EPYC with "
          f"AVX512-BF16, torch in bf16 was the fastest (docs/BENCHMARKS.md section 5); lnca bench speed --backend "
          f"all measures this one")
