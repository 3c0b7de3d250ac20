"""What computes each tile: torch (the model itself), or the model's ONNX graph (export.py) in ONNX
Runtime or OpenVINO. The engine plans the tiles, pads and stitches them, whatever the back end; a
back end only restores one padded tile, (1, 3, H, W) with H and W multiples of the model's
`multiple_of`, to a float32 tensor of the same shape on the CPU.

open_backend builds one (for a batch: once), check_backend finds every bad setting before anything is
built. The graph back ends run on the CPU, at a fixed step count (the graph's), with as many threads
as torch has; onnxruntime and openvino are imported here only, when one of them is opened.
"""
from __future__ import annotations

import os
from importlib import metadata
from typing import Callable

import numpy as np
import torch

from lnca_cli.devices import PRECISIONS, autocast, resolve_device, resolve_precision
from lnca_cli.errors import SettingsError
from lnca_cli.export import INPUT_NAME, build_graph, check_exportable, check_graph, require
from lnca_cli.model import LNCA

BACKENDS = ("torch", "onnxruntime", "openvino")
DEFAULT_BACKEND = "torch"  # torch bf16 measured fastest on the CPU measured (docs/BENCHMARKS.md section 5)


class Backend:
    """Restores one padded tile; `device` and `precision` say where and how (precision resolved)."""

    name: str
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"

    def restore_padded(self, pixels: torch.Tensor, steps: int, origin: tuple[int, int], seeds: torch.Tensor,
                       on_step: Callable[[], None] | None) -> torch.Tensor:
        raise NotImplementedError


class TorchBackend(Backend):
    """The model itself, on its device, under the precision's autocast."""

    name = "torch"

    def __init__(self, model: LNCA, device: torch.device, precision: str):
        self.model, self.device = model.to(device).eval(), device
        self.precision = resolve_precision(device, precision, model.supports_half)
        self.context = autocast(device, precision, model.supports_half)

    def restore_padded(self, pixels, steps, origin, seeds, on_step):
        with self.context:
            result = self.model.restore_padded(pixels.to(self.device), steps, origin=origin, seeds=seeds,
                                               on_step=on_step)
        return result.float().cpu()


class GraphBackend(Backend):
    """A graph of the model at `steps`, compiled by a runtime; on_step is called for every step once the
    tile is done (a runtime runs the graph as one call)."""

    def __init__(self, graph: bytes, steps: int, precision: str, threads: int):
        self.steps, self.precision = steps, precision
        self._run = self._compile(graph, precision, threads)

    def _compile(self, graph: bytes, precision: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        raise NotImplementedError

    def restore_padded(self, pixels, steps, origin, seeds, on_step):
        if steps != self.steps:
            raise ValueError(f"this {self.name} back end runs a graph of {self.steps} NCA steps, not {steps}")
        result = torch.from_numpy(self._run(np.ascontiguousarray(pixels.float().numpy())))
        for _ in range(steps if on_step else 0):
            on_step()
        return result


class OnnxRuntimeBackend(GraphBackend):
    name = "onnxruntime"

    def _compile(self, graph, precision, threads):
        ort = require("onnxruntime", "--backend onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return lambda pixels: session.run(None, {INPUT_NAME: pixels})[0]


class OpenVinoBackend(GraphBackend):
    name = "openvino"

    def _compile(self, graph, precision, threads):
        ov = require("openvino", "--backend openvino")
        core = ov.Core()
        compiled = core.compile_model(core.read_model(graph), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision]})
        request = compiled.create_infer_request()
        return lambda pixels: request.infer({0: pixels})[0]


GRAPH_BACKENDS = {backend.name: backend for backend in (OnnxRuntimeBackend, OpenVinoBackend)}


def installed() -> dict[str, str | None]:
    """Each back end's runtime version, None where it (or onnx, which builds its graphs) is not installed."""
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    have_onnx = version("onnx") is not None
    return {"torch": torch.__version__, **{name: version(name) if have_onnx else None for name in GRAPH_BACKENDS}}


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 on this CPU (AVX512-BF16 or AMX)."""
    return "BF16" in require("openvino", "--backend openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def graph_precision(name: str, precision: str) -> str:
    """What a precision means for a graph back end: onnxruntime runs fp32 only; openvino runs bf16 too
    where the CPU has it, and auto is bf16 there, as for torch. SettingsError for the others."""
    if precision not in PRECISIONS:
        raise SettingsError(f"unknown precision '{precision}'; expected one of {', '.join(PRECISIONS)}")
    has_bf16 = name == "openvino" and openvino_has_bf16()
    if precision == "auto":
        return "bf16" if has_bf16 else "fp32"
    if precision == "fp16" or (precision == "bf16" and not has_bf16):
        where = "on this CPU " if name == "openvino" and precision == "bf16" else ""
        raise SettingsError(f"--backend {name} runs lnca graphs {where}in fp32"
                            f"{' or bf16' if has_bf16 else ''} only, not {precision}")
    return precision


def _graph_settings(name: str, device: str, precision: str) -> str:
    """A graph back end's runtime is installed, it runs on the CPU, and the precision it runs in."""
    require(name, f"--backend {name}")
    if device not in ("auto", "cpu"):
        raise SettingsError(f"--backend {name} runs on the CPU; use --device cpu (or auto), or --backend torch")
    return graph_precision(name, precision)


def check_backend(name: str, model: LNCA, steps: int | None = None, device: str = "auto", precision: str = "auto",
                  graph: str | os.PathLike | None = None) -> str:
    """Raise SettingsError (DeviceError for torch's device or precision) for a back end that cannot
    run these settings, before anything is built; returns the precision it will run in. A graph file
    must be of this model and step count."""
    steps = model.config.steps if steps is None else steps
    if name not in BACKENDS:
        raise SettingsError(f"unknown back end '{name}'; expected one of {', '.join(BACKENDS)}")
    if name == "torch":
        if graph is not None:
            raise SettingsError("--onnx gives a graph to --backend onnxruntime or openvino, not torch")
        return resolve_precision(resolve_device(device), precision, model.supports_half)  # or DeviceError
    resolved = _graph_settings(name, device, precision)
    if graph is None:
        require("onnx", f"--backend {name}")
        check_exportable(model, steps)
    else:
        check_graph(graph, model, steps)
    return resolved


def open_backend(name: str, model: LNCA, steps: int | None = None, device: str | torch.device = "auto",
                 precision: str = "auto", graph: str | os.PathLike | None = None) -> Backend:
    """The back end `name` for this model at `steps` (default: the model's): torch on `device`, or a
    graph back end on the CPU running `graph` (a file from lnca export) or, without one, the model's
    graph built now. Bad settings raise SettingsError (see check_backend)."""
    if name not in GRAPH_BACKENDS:
        check_backend(name, model, steps, str(device), precision, graph)  # an unknown name, or a graph for torch
        return TorchBackend(model, device if isinstance(device, torch.device) else resolve_device(device), precision)
    steps = model.config.steps if steps is None else steps
    resolved = _graph_settings(name, str(device), precision)
    data = check_graph(graph, model, steps) if graph is not None else build_graph(model, steps).SerializeToString()
    return GRAPH_BACKENDS[name](data, steps, resolved, torch.get_num_threads())
