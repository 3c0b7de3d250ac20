"""Bad settings: a one-line error and exit 2 before any file is read or written.

(tests/test_cli.py covers --steps 0 and -3, a tile under the default halo, an unknown device, an
unknown or missing model and bad --quality; here: absurd values, and weights files that are not
what they claim.)
"""
import json

import pytest
import torch
from safetensors.torch import save_file

import lnca_cli.api as api
from conftest import TINY, lnca, random_model, write_photo
from lnca_cli.hub import CONFIG_KEY
from lnca_cli.model import LNCAConfig

from .conftest import assert_no_traceback


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """Two photos, and reading any image fails the test: bad settings must be found before."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "a.png")
    write_photo(folder / "b.jpg", seed=1)
    monkeypatch.setattr(api, "read_image", lambda *a, **k: pytest.fail("an image was read"))
    return folder


def _assert_refused_before_work(result, tmp_path, *says: str) -> None:
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in says:
        assert text in lines[0]
    assert_no_traceback(result.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, says", [
    (["--steps", "10001"], "--steps must be between 1 and 10000"),
    (["--steps", str(10**12)], "--steps must be between 1 and 10000"),
    (["--steps", "100", "--tile", "256"], "smaller than the halo (416 px at 100 steps)"),
    (["--device", "cuda:x"], "unknown device"),
    (["--device", "tpu"], "unknown device"),
    (["--max-pixels", "-1"], "--max-pixels"),
    (["--seed", str(2**64)], "--seed must be between"),
    (["--seed", str(-(2**63) - 1)], "--seed must be between"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_absurd_settings(photos, tmp_path, tiny_weights, args, says):
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out", *args)
    _assert_refused_before_work(result, tmp_path, says)


def _tiny_state() -> dict:
    return {k: v.contiguous() for k, v in random_model().state_dict().items()}


def _write(path, state: dict, config: dict | None) -> str:
    save_file(state, str(path), metadata=None if config is None else {CONFIG_KEY: json.dumps(config)})
    return str(path)


def _write_config_text(path, state: dict, text: str) -> str:
    """A config written as it is, JSON that json.dumps would not make (1e400, deep nesting)."""
    save_file(state, str(path), metadata={CONFIG_KEY: text})
    return str(path)


def _with_tensor(change) -> dict:
    state = _tiny_state()
    state["encoder.skip.0.weight"] = change(state["encoder.skip.0.weight"])
    return state


def _write_bytes(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _truncated_weights(path) -> bytes:
    _write(path, _tiny_state(), TINY.to_dict())
    data = path.read_bytes()
    return data[: len(data) // 2]


WEIGHTS = {
    "random bytes": (lambda p: _write_bytes(p, bytes(range(256)) * 8), "not a valid safetensors"),
    "a truncated file": (lambda p: _write_bytes(p, _truncated_weights(p)), "not a valid safetensors"),
    "an empty file": (lambda p: _write_bytes(p, b""), "not a valid safetensors"),
    "another model's tensors": (lambda p: _write(p, {"fc.weight": torch.zeros(2, 2)}, None),
                                "not an lnca weights file"),
    "a config that is not one": (lambda p: _write(p, _tiny_state(), {"cell_channels": "many"}), "bad model config"),
    "a wider architecture's config": (
        lambda p: _write(p, _tiny_state(), {**TINY.to_dict(), "latent_channels": 16}),
        "weights do not match the model config"),
    "dropout 5": (lambda p: _write(p, _tiny_state(), {**TINY.to_dict(), "dropout": 5}), "dropout must be in [0, 1)"),
    "steps 1e400": (lambda p: _write_config_text(p, _tiny_state(), json.dumps(TINY.to_dict()).replace(
        '"steps": 4', '"steps": 1e400')), "bad model config"),
    "steps 1e9": (lambda p: _write(p, _tiny_state(), {**TINY.to_dict(), "steps": 10**9}),
                  "steps must be between 1 and 10000"),
    "channels for 160 GB": (lambda p: _write(p, _tiny_state(), {**TINY.to_dict(), "embed_dim": 10**7}),
                            "embed_dim must be between 1 and 1024"),
    "a model larger than its file": (lambda p: _write(p, _tiny_state(), {**TINY.to_dict(), "embed_dim": 1024,
                                                                        "hidden_channels": 1024}),
                                     "it describes"),
    "image_channels 1": (lambda p: _write(p, _tiny_state(), {**TINY.to_dict(), "image_channels": 1}),
                         "image_channels must be 3"),
    "image_channels 4": (lambda p: _write(p, _tiny_state(), {**TINY.to_dict(), "image_channels": 4}),
                         "image_channels must be 3"),
    "deeply nested JSON": (lambda p: _write_config_text(p, _tiny_state(), "[" * 100_000 + "]" * 100_000),
                           "nested too deeply"),
    "NaN weights": (lambda p: _write(p, _with_tensor(lambda t: t.fill_(float("nan"))), TINY.to_dict()),
                    "NaN or infinity"),
    "Inf weights": (lambda p: _write(p, _with_tensor(lambda t: t.fill_(float("inf"))), TINY.to_dict()),
                    "NaN or infinity"),
    "integer weights": (lambda p: _write(p, _with_tensor(lambda t: t.round().to(torch.int32)), TINY.to_dict()),
                        "torch.int32"),
}


@pytest.mark.parametrize("kind", WEIGHTS)
def test_corrupt_or_wrong_architecture_weights(photos, tmp_path, kind):
    make, says = WEIGHTS[kind]
    weights = make(tmp_path / "model.safetensors")
    result = lnca("denoise", photos, "-m", weights, "-o", tmp_path / "out")
    _assert_refused_before_work(result, tmp_path, "model.safetensors", says)
    assert "RecursionError" not in result.stderr and "OverflowError" not in result.stderr  # a plain line


def test_wider_config_is_a_real_architecture():
    """Guards the wrong-architecture case above: its config must itself be valid."""
    assert LNCAConfig.from_dict({**TINY.to_dict(), "latent_channels": 16}).latent_channels == 16
