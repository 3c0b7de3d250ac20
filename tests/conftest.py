"""Shared fixtures: tiny randomly initialised models (nothing here pretends to be trained)."""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lnca_cli.cli import app
from lnca_cli.hub import save_weights
from lnca_cli.model import LNCA, LNCAConfig


def pytest_configure(config):
    """No test may reach huggingface.co. huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at
    import, and uses them for requests lnca does not direct (2.x looks up a list of "agent harnesses").
    So before it is imported: a local address where nothing listens, and online mode, which the
    download tests need (they point lnca at their own local server)."""
    assert "huggingface_hub" not in sys.modules, "huggingface_hub was imported before the tests could set it up"
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    os.environ.pop("HF_HUB_OFFLINE", None)


TINY = LNCAConfig(ae_channels=4, latent_channels=8, hidden_channels=8, embed_dim=16, steps=4)


def random_model(config: LNCAConfig = TINY, seed: int = 0, sharp: bool = False) -> LNCA:
    """A random model in eval mode. `sharp` also randomises the zero-initialised gates and the
    BatchNorm statistics, so that every neighbour exchange is live (what tiling tests need)."""
    torch.manual_seed(seed)
    model = LNCA(config)
    if sharp:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.5)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2)
    return model.eval()


@pytest.fixture
def tiny_model() -> LNCA:
    return random_model()


@pytest.fixture
def tiny_weights(tmp_path) -> str:
    """A tiny untrained model saved as a safetensors file, with a task but no training record."""
    path = tmp_path / "tiny.safetensors"
    save_weights(random_model(), path, {"task": "denoise"})
    return str(path)


def write_photo(path, size=(24, 20), mode="RGB", seed=0) -> None:
    """A small random image file; the format comes from the extension."""
    rng = np.random.default_rng(seed)
    w, h = size
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = (rng.random((h, w, channels)) * 255).astype(np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


def lnca(*args) -> "click.testing.Result":  # noqa: F821
    """Run `lnca ARGS` in-process; a crash (any exception but an exit) fails the test at once."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"lnca {' '.join(map(str, args))} crashed") from result.exception
    return result
