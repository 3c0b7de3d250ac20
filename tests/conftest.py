"""Shared fixtures: tiny randomly initialised models (nothing here pretends to be trained)."""
import numpy as np
import pytest
import torch
from PIL import Image

from lnca_cli.hub import save_weights
from lnca_cli.model import LNCA, LNCAConfig

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
