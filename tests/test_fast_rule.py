"""The channels-last rule computes what the NCHW rule it replaced computed (lnca_cli/previous_rule.py)."""
from pathlib import Path

import pytest
import torch

import lnca_cli.previous_rule as previous
from conftest import TINY, random_model
from lnca_cli.hub import load_weights
from lnca_cli.metrics import quantize8
from lnca_cli.model import PRESETS, LNCAConfig

WEIGHTS = Path(__file__).parent.parent / "weights"


@pytest.mark.parametrize("config", [
    PRESETS["paper"], PRESETS["wide-dw"], LNCAConfig(**{**TINY.to_dict(), "update_rate": 0.5}),
], ids=["paper", "wide-dw", "stochastic"])
def test_channels_last_rule_equals_the_nchw_rule_on_random_weights(config):
    """Three steps of strong random weights are chaotic: float32 rounding grows 100x a step, so the
    two formulations are compared in float64, where only a difference in the maths shows."""
    model = random_model(config, sharp=True).double()
    z = torch.randn(2, config.latent_channels, 11, 9, dtype=torch.float64)
    seeds = torch.tensor([3, 5])
    with torch.no_grad():
        fast = model.nca.run(model.nca.seed(z), 3, origin=(2, 7), seeds=seeds)
        slow = previous.run(model.nca, previous.seed(model.nca, z), 3, origin=(2, 7), seeds=seeds)
    assert float((fast.permute(0, 3, 1, 2) - slow).abs().max()) <= 1e-5


def test_one_step_of_the_rule_matches_within_1e_5():
    model = random_model(PRESETS["wide-dw"], sharp=False)
    with torch.no_grad():
        for p in model.nca.parameters():
            p.normal_(0, 0.1)
        cells = model.nca.seed(torch.randn(1, 48, 16, 16))
        fast = model.nca.rule(cells).permute(0, 3, 1, 2)
        slow = previous.rule(model.nca.rule, cells.permute(0, 3, 1, 2))
    assert float((fast - slow).abs().max()) <= 1e-5


@pytest.mark.parametrize("name", ["denoise", "deblur", "denoise-masked", "deblur-v2", "denoise-v4", "denoise-v5", "denoise-masked-v2"])
def test_shipped_weights_give_the_same_8_bit_output_as_before(name):
    model, _ = load_weights(WEIGHTS / f"{name}.safetensors")
    model.eval()
    image = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = quantize8(model(image, steps=8))
    with torch.no_grad():
        slow = quantize8(previous.PreviousRuleLNCA.of(model)(image, steps=8))
    assert float((fast - slow).abs().max()) * 255 <= 1.0 + 1e-4


@pytest.mark.parametrize("config", [PRESETS["wide-dw"], LNCAConfig(**{**TINY.to_dict(), "update_rate": 0.5})],
                         ids=["wide-dw", "stochastic"])
def test_banded_steps_equal_whole_grid_steps(monkeypatch, config):
    """The switch an ONNX export uses (nca.banded = False) changes how a step is cut, not what it computes."""
    import lnca_cli.model as model_module

    monkeypatch.setattr(model_module, "BAND_CELLS", 20)  # bands of 2 rows on this 9-wide grid: many bands
    model = random_model(config, sharp=True).double()
    cells = model.nca.seed(torch.randn(1, config.latent_channels, 11, 9, dtype=torch.float64))
    with torch.no_grad():
        banded = model.nca.run(cells, 3, origin=(2, 7), seeds=torch.tensor([3]))
        model.nca.banded = False
        whole = model.nca.run(cells, 3, origin=(2, 7), seeds=torch.tensor([3]))
    assert float((banded - whole).abs().max()) <= 1e-9
