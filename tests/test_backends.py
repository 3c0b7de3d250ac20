"""ONNX export and the graph back ends (onnxruntime, openvino): the real runtimes, no mocks. A test that
needs one is skipped, saying so, where its extra is not installed; CI installs both.

Small and fast: the tiny random model (conftest.TINY, 4 steps) with every neighbour exchange live."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, lnca, random_model, write_photo
from lnca_cli.backends import open_backend
from lnca_cli.engine import restore_tensor
from lnca_cli.hub import load_model, save_weights, sha256_of
from lnca_cli.metrics import quantize8
from lnca_cli.model import LNCAConfig

README = Path(__file__).parent.parent / "README.md"
EXTRAS = {"onnx": "lnca[onnx]", "onnxruntime": "lnca[onnx]", "openvino": "lnca[openvino]"}
GRAPH_BACKENDS = ["onnxruntime", "openvino"]


def need(*modules: str) -> None:
    """Skip the test, saying which extra is missing, unless these modules are installed."""
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed: pip install \"{EXTRAS[module]}\"")


def one_error_line(result) -> str:
    """stderr of a failed command: exactly one line, an error, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def sharp_weights(tmp_path) -> str:
    path = tmp_path / "sharp.safetensors"
    save_weights(random_model(sharp=True), path, {"task": "denoise"})
    return str(path)


@pytest.fixture
def graph(tmp_path, sharp_weights) -> Path:
    """The sharp model's graph at its 4 steps, written by lnca export."""
    need("onnx")
    path = tmp_path / "sharp.onnx"
    result = lnca("export", sharp_weights, "--onnx", path)
    assert result.exit_code == 0, result.stderr
    return path


@pytest.mark.parametrize("name", GRAPH_BACKENDS)
def test_the_graph_matches_the_torch_restore_within_one_level(name, sharp_weights):
    need("onnx", name)
    model = load_model(sharp_weights)
    image = torch.rand(3, 61, 90, generator=torch.Generator().manual_seed(0))  # not multiples of 4: padded
    reference = restore_tensor(image, model, tile=0, device="cpu", precision="fp32")
    restored = restore_tensor(image, model, tile=0, backend=open_backend(name, model, precision="fp32"))
    assert restored.shape == reference.shape
    assert float((quantize8(restored) - quantize8(reference)).abs().max()) * 255 <= 1 + 1e-4


def test_a_residual_models_graph_matches_its_torch_restore(tmp_path):
    need("onnx", "onnxruntime")
    model = random_model(LNCAConfig(**{**TINY.to_dict(), "residual": True}), sharp=True)
    image = torch.rand(3, 40, 52, generator=torch.Generator().manual_seed(1))
    reference = restore_tensor(image, model, tile=0, device="cpu", precision="fp32")
    restored = restore_tensor(image, model, tile=0, backend=open_backend("onnxruntime", model, precision="fp32"))
    assert float((quantize8(restored) - quantize8(reference)).abs().max()) * 255 <= 1 + 1e-4


@pytest.mark.parametrize("name", GRAPH_BACKENDS)
def test_a_tiled_run_through_each_back_end_equals_its_untiled_run(name, sharp_weights):
    need("onnx", name)
    model = load_model(sharp_weights)
    backend = open_backend(name, model, precision="fp32")
    image = torch.rand(3, 97, 130, generator=torch.Generator().manual_seed(1))
    whole = restore_tensor(image, model, tile=0, backend=backend)
    tiled = restore_tensor(image, model, tile=32, backend=backend)  # the halo at 4 steps: 12 tiles
    assert float((whole - tiled).abs().max()) < 1e-4


def test_export_writes_a_checked_graph_with_the_model_in_its_metadata(graph, sharp_weights):
    import onnx

    model = onnx.load(graph)
    onnx.checker.check_model(model, full_check=True)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(metadata["lnca_config"]) == TINY.to_dict()
    assert metadata["lnca_weights_sha256"] == sha256_of(sharp_weights)
    assert metadata["lnca_steps"] == "4" and "multiples of 4" in metadata["lnca_input"]
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["restored"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


def test_export_never_replaces_a_file_without_overwrite(graph, sharp_weights, tmp_path):
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"a file of the user's")
    result = lnca("export", sharp_weights, "--onnx", mine)
    assert result.exit_code == 2 and "--overwrite" in one_error_line(result)
    assert mine.read_bytes() == b"a file of the user's"
    assert lnca("export", sharp_weights, "--onnx", mine, "--overwrite", "--steps", "2").exit_code == 0
    assert mine.read_bytes()[:2] != b"a "


@pytest.mark.parametrize("args, message", [
    (["--onnx", "{tmp}/no/such/folder/x.onnx"], "no such folder"),
    (["--onnx", "{tmp}/x.png"], "name the graph file .onnx"),
    (["--onnx", "{tmp}/x.onnx", "--opset", "9"], "--opset must be between"),
])
def test_export_bad_settings_are_one_line(sharp_weights, tmp_path, args, message):
    need("onnx")
    result = lnca("export", sharp_weights, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and message in one_error_line(result)


def test_export_refuses_a_model_with_stochastic_updates_in_one_line(tmp_path):
    need("onnx")
    weights = tmp_path / "stochastic.safetensors"
    save_weights(random_model(LNCAConfig(**{**TINY.to_dict(), "update_rate": 0.5})), weights, {"task": "denoise"})
    result = lnca("export", weights, "--onnx", tmp_path / "x.onnx")
    assert result.exit_code == 2 and "update_rate 1" in one_error_line(result)


@pytest.mark.parametrize("name", GRAPH_BACKENDS)
def test_denoise_through_each_back_end_and_its_exported_graph(name, graph, sharp_weights, tmp_path):
    need(name)
    photo = tmp_path / "a.png"
    write_photo(photo, size=(45, 38))
    outputs = {}
    for backend, extra in (("torch", []), (name, []), (f"{name} --onnx", ["--onnx", graph])):
        out = tmp_path / f"{backend.split()[0]}{len(extra)}.png"
        result = lnca("denoise", photo, "-o", out, "-m", sharp_weights, "--backend", backend.split()[0],
                      "--precision", "fp32", "-q", *extra)
        assert result.exit_code == 0, result.stderr
        outputs[backend] = np.asarray(Image.open(out)).astype(int)
    assert all(np.abs(outputs["torch"] - o).max() <= 1 for o in outputs.values())


@pytest.mark.parametrize("make, message", [
    (lambda tmp, weights: tmp / "missing.onnx", "no such ONNX graph file"),
    (lambda tmp, weights: weights, "not an ONNX graph"),
])
def test_a_bad_graph_path_is_one_line(make, message, sharp_weights, tmp_path):
    need("onnx", "onnxruntime")
    photo = tmp_path / "a.png"
    write_photo(photo)
    result = lnca("denoise", photo, "-m", sharp_weights, "--backend", "onnxruntime", "--onnx",
                  make(tmp_path, sharp_weights))
    assert result.exit_code == 2 and message in one_error_line(result)
    assert not (tmp_path / "a_denoise.png").exists()


def test_a_graph_of_another_model_or_step_count_is_one_line(graph, sharp_weights, tmp_path, tiny_weights):
    need("onnxruntime")
    photo = tmp_path / "a.png"
    write_photo(photo)
    other = lnca("denoise", photo, "-m", tiny_weights, "--backend", "onnxruntime", "--onnx", graph)
    assert other.exit_code == 2 and "a graph of another model" in one_error_line(other)
    steps = lnca("denoise", photo, "-m", sharp_weights, "--backend", "onnxruntime", "--onnx", graph, "--steps", "3")
    assert steps.exit_code == 2 and "a graph of 4 NCA steps, not 3" in one_error_line(steps)
    torch_with_graph = lnca("denoise", photo, "-m", tiny_weights, "--onnx", graph)
    assert torch_with_graph.exit_code == 2 and "not torch" in one_error_line(torch_with_graph)


@pytest.mark.parametrize("command, module, extra", [
    (["denoise", "{photo}", "--backend", "onnxruntime"], "onnxruntime", "lnca[onnx]"),
    (["restore", "{photo}", "--backend", "openvino"], "openvino", "lnca[openvino]"),
    (["export", "{weights}", "--onnx", "{tmp}/x.onnx"], "onnx", "lnca[onnx]"),
])
def test_a_missing_extra_is_one_line_saying_what_to_install(monkeypatch, command, module, extra, tiny_weights,
                                                            tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    photo = tmp_path / "a.png"
    write_photo(photo)
    args = [a.format(photo=photo, weights=tiny_weights, tmp=tmp_path) for a in command]
    result = lnca(*args, *(["-m", tiny_weights] if command[0] != "export" else []))
    assert result.exit_code == 2 and f'pip install "{extra}"' in one_error_line(result)


@pytest.mark.parametrize("args, message", [
    (["--backend", "tensorrt"], "unknown back end 'tensorrt'"),
    (["--backend", "onnxruntime", "--precision", "bf16"], "fp32 only"),
    (["--backend", "openvino", "--precision", "fp16"], "not fp16"),
    (["--backend", "onnxruntime", "--device", "cuda"], "runs on the CPU"),
])
def test_bad_back_end_settings_are_one_line(args, message, tiny_weights, tmp_path):
    if args[1] != "tensorrt":
        need("onnx", args[1])
    photo = tmp_path / "a.png"
    write_photo(photo)
    result = lnca("denoise", photo, "-m", tiny_weights, *args)
    assert result.exit_code == 2 and message in one_error_line(result)


def test_eval_through_a_back_end_scores_as_torch_does(sharp_weights, tmp_path):
    need("onnx", "onnxruntime")
    folder = tmp_path / "clean"
    folder.mkdir()
    write_photo(folder / "a.png", size=(40, 32), seed=1)
    reports = {}
    for backend in ("torch", "onnxruntime"):
        result = lnca("eval", "--data", folder, "-m", sharp_weights, "--backend", backend, "--json")
        assert result.exit_code == 0, result.stderr
        reports[backend] = json.loads(result.stdout)
    assert reports["onnxruntime"]["backend"] == "onnxruntime fp32"
    assert reports["onnxruntime"]["mean"]["psnr"] == pytest.approx(reports["torch"]["mean"]["psnr"], abs=0.1)


def test_info_lists_the_back_ends():
    result = lnca("info")
    assert "back ends: torch" in result.stdout and "onnxruntime" in result.stdout and "openvino" in result.stdout


def readme_example() -> str:
    """The README's example of running an exported graph with onnxruntime alone."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    return next(block for block in blocks if "ort.InferenceSession" in block)


def test_the_readme_example_runs_the_graph_in_onnxruntime_without_lnca(graph, sharp_weights, tmp_path):
    need("onnxruntime")
    (tmp_path / "denoise.onnx").write_bytes(graph.read_bytes())
    write_photo(tmp_path / "photo.jpg", size=(53, 41))
    code = "import sys\nsys.modules['lnca_cli'] = None  # any import of lnca fails\n" + readme_example()
    assert len(readme_example().strip().splitlines()) <= 10
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = lnca("denoise", tmp_path / "photo.jpg", "-o", tmp_path / "lnca.png", "-m", sharp_weights,
                  "--precision", "fp32", "--tile", "0", "-q")
    assert result.exit_code == 0, result.stderr
    theirs = np.asarray(Image.open(tmp_path / "photo_denoise.png")).astype(int)
    ours = np.asarray(Image.open(tmp_path / "lnca.png")).astype(int)
    assert theirs.shape == ours.shape and np.abs(theirs - ours).max() <= 1


def test_the_help_names_the_extras_to_install():
    result = lnca("denoise", "--help")
    assert '"lnca[onnx]"' in result.stdout and '"lnca[openvino]"' in result.stdout
