"""A model as an ONNX graph: the whole restore of one tile, for ONNX Runtime, OpenVINO and other tools.

The graph is encoder -> N NCA steps -> decoder, with the step count fixed and the height and width
dynamic. Its contract (also in its metadata, under INPUT_KEY): one input "image", float32 RGB in
[0, 1], NCHW (N, 3, H, W) with H and W multiples of 4; one output "restored" of the same shape.
Padding an image to a multiple of 4, tiling and cropping are the caller's (engine.py does them for
lnca's own back ends).

The metadata says which model and step count the graph is (check_graph refuses a graph of another
one): the model's name, architecture and config JSON, its weights file's sha256, the steps, the
lnca version and the contract. `onnx` is imported here only, and only when a graph is built or read.
"""
from __future__ import annotations

import copy
import importlib
import io
import json
import os
import warnings
from pathlib import Path

import torch

from lnca_cli import __version__
from lnca_cli.errors import SettingsError, first_line
from lnca_cli.files import atomic_write
from lnca_cli.hub import ARCH_KEY, CONFIG_KEY, registry_name, sha256_of
from lnca_cli.model import LNCA, MAX_STEPS

INPUT_NAME, OUTPUT_NAME = "image", "restored"
DEFAULT_OPSET = 17  # the first with LayerNormalization
OPSETS = range(DEFAULT_OPSET, 21)  # what torch's exporter writes (TorchScript-based, no onnxscript needed)
MODEL_KEY = "lnca_model"  # and hub's ARCH_KEY and CONFIG_KEY, as in a weights file
SHA_KEY, STEPS_KEY, VERSION_KEY, INPUT_KEY = "lnca_weights_sha256", "lnca_steps", "lnca_version", "lnca_input"
CONTRACT = ('input "image": float32 RGB in [0, 1], NCHW (N, 3, H, W), H and W multiples of 4; output "restored": '
            'the same shape, in [0, 1]')
EXTRA = {"onnx": 'pip install "lnca[onnx]"', "onnxruntime": 'pip install "lnca[onnx]"',
         "openvino": 'pip install "lnca[openvino]"'}


def require(module: str, purpose: str):
    """Import an optional extra's module, or raise a one-line SettingsError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SettingsError(f"{purpose} needs {module}, which is not installed: {EXTRA[module]}") from None


def weights_sha256(model: LNCA) -> str:
    """The sha256 of the weights file the model was loaded from (hub.load_model); "" for one built in code."""
    path = getattr(model, "info", {}).get("path")
    return sha256_of(path) if path else ""


def graph_metadata(model: LNCA, steps: int) -> dict[str, str]:
    """What the graph's metadata says of the model it was built from (check_graph compares these)."""
    return {MODEL_KEY: registry_name(model), ARCH_KEY: model.arch,
            CONFIG_KEY: json.dumps(model.config.to_dict()), SHA_KEY: weights_sha256(model), STEPS_KEY: str(steps),
            VERSION_KEY: __version__, INPUT_KEY: CONTRACT}


class TileGraph(torch.nn.Module):
    """What is traced: restore_padded on a copy of the model whose NCA steps the whole grid at once."""

    def __init__(self, model: LNCA, steps: int):
        super().__init__()
        self.model, self.steps = copy.deepcopy(model).float().eval(), steps
        self.model.nca.banded = False

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.restore_padded(image, self.steps)


def check_exportable(model: LNCA, steps: int, opset: int = DEFAULT_OPSET) -> None:
    """Raise SettingsError for what cannot be a graph: stochastic updates (their mask hashes global cell
    positions and a seed, which the graph does not take), or an opset the exporter does not write."""
    if model.config.update_rate < 1.0:
        raise SettingsError(f"this model updates a random {model.config.update_rate:g} of its cells per step; only "
                            f"models that update every cell (update_rate 1) are exported to ONNX")
    if opset not in OPSETS:
        raise SettingsError(f"--opset must be between {OPSETS[0]} and {OPSETS[-1]}, got {opset}")
    if not 1 <= steps <= MAX_STEPS:
        raise SettingsError(f"--steps must be between 1 and {MAX_STEPS}, got {steps}")


def build_graph(model: LNCA, steps: int | None = None, opset: int = DEFAULT_OPSET):
    """The model's tile restore at `steps` (default: the model's) as a checked onnx.ModelProto."""
    onnx = require("onnx", "ONNX export")
    steps = model.config.steps if steps is None else steps
    check_exportable(model, steps, opset)
    sample = torch.rand(1, 3, 8 * model.multiple_of, 8 * model.multiple_of)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes: whole-grid steps have no shape constant
        torch.onnx.export(TileGraph(model, steps), (sample,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={name: {0: "batch", 2: "height", 3: "width"}
                                        for name in (INPUT_NAME, OUTPUT_NAME)})
    graph = onnx.load_from_string(buffer.getvalue())
    graph.producer_name, graph.producer_version = "lnca", __version__
    graph.doc_string = f"lnca restore of one tile, {steps} NCA steps. {CONTRACT}."
    onnx.helper.set_model_props(graph, graph_metadata(model, steps))
    onnx.checker.check_model(graph, full_check=True)
    return graph


def check_target(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Where a graph may be written: a .onnx file in an existing folder, an existing one only with
    `overwrite`. SettingsError otherwise."""
    target = Path(path)
    if target.suffix.lower() != ".onnx":
        raise SettingsError(f"--onnx {path}: name the graph file .onnx")
    if target.is_dir():
        raise SettingsError(f"--onnx {path} is a folder; give the file to write (.onnx)")
    if target.exists() and not overwrite:
        raise SettingsError(f"--onnx {path} exists; --overwrite replaces it")
    if not target.parent.is_dir():
        raise SettingsError(f"--onnx {path}: no such folder {target.parent}")


def write_graph(graph, path: str | os.PathLike, overwrite: bool = False) -> int:
    """Write the graph atomically where check_target allows; returns its size in bytes."""
    check_target(path, overwrite)
    data = graph.SerializeToString()
    atomic_write(path, lambda file: file.write(data))
    return len(data)


def read_graph(path: str | os.PathLike) -> tuple[bytes, dict[str, str]]:
    """A graph file's bytes and its metadata; SettingsError, one line, for a missing file or one that is
    not an ONNX graph."""
    onnx = require("onnx", "An ONNX graph")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such ONNX graph file") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        graph = onnx.load_from_string(data)
        onnx.checker.check_model(graph)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds (DecodeError, ValidationError...)
        raise SettingsError(f"{path}: not an ONNX graph ({first_line(exc)})") from None
    return data, {prop.key: prop.value for prop in graph.metadata_props}


def check_graph(path: str | os.PathLike, model: LNCA, steps: int) -> bytes:
    """The graph file's bytes, if it is this model's restore at this step count (SettingsError otherwise)."""
    data, metadata = read_graph(path)
    if CONFIG_KEY not in metadata:
        raise SettingsError(f"{path}: not a graph exported by lnca (no '{CONFIG_KEY}' in its metadata)")
    expected = graph_metadata(model, steps)
    other = [key for key in (ARCH_KEY, CONFIG_KEY, SHA_KEY) if expected[key] and metadata.get(key) != expected[key]]
    if other:
        raise SettingsError(f"{path}: a graph of another model ('{metadata.get(MODEL_KEY, '?')}', weights sha256 "
                            f"{metadata.get(SHA_KEY, '?')[:12]}...), not of '{expected[MODEL_KEY]}'; export this one "
                            f"with lnca export")
    if metadata.get(STEPS_KEY) != str(steps):
        raise SettingsError(f"{path}: a graph of {metadata.get(STEPS_KEY)} NCA steps, not {steps}; give --steps "
                            f"{metadata.get(STEPS_KEY)}, or export one with --steps {steps}")
    return data
