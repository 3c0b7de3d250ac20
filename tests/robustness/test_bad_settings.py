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
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_absurd_settings(photos, tmp_path, tiny_weights, args, says):
    result = lnca("denoise", photos, "-m", tiny_weights, "-o", tmp_path / "out", *args)
    _assert_refused_before_work(result, tmp_path, says)


def _tiny_state() -> dict:
    return {k: v.contiguous() for k, v in random_model().state_dict().items()}


def _write(path, state: dict, config: dict | None) -> str:
    save_file(state, str(path), metadata=None if config is None else {CONFIG_KEY: json.dumps(config)})
    return str(path)


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
}


@pytest.mark.parametrize("kind", WEIGHTS)
def test_corrupt_or_wrong_architecture_weights(photos, tmp_path, kind):
    make, says = WEIGHTS[kind]
    weights = make(tmp_path / "model.safetensors")
    result = lnca("denoise", photos, "-m", weights, "-o", tmp_path / "out")
    _assert_refused_before_work(result, tmp_path, "model.safetensors", says)


def test_wider_config_is_a_real_architecture():
    """Guards the wrong-architecture case above: its config must itself be valid."""
    assert LNCAConfig.from_dict({**TINY.to_dict(), "latent_channels": 16}).latent_channels == 16
