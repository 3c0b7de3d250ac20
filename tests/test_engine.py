"""The restore engine: tiled == untiled, padding, devices, arrays, determinism."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import lnca_cli.devices as devices
import lnca_cli.engine as engine
from conftest import TINY, random_model
from lnca_cli.devices import DeviceError, resolve_device
from lnca_cli.engine import restore, restore_tensor
from lnca_cli.hub import load_weights
from lnca_cli.model import LNCA, PRESETS, LNCAConfig
from lnca_cli.tiling import plan_tiles

EIGHT_BIT = 1 / 255
SEAMLESS = 1e-4  # pixels off (pixels_off) of a tiled restore that matches: a pixel or three at these sizes


def pixels_off(whole: torch.Tensor, tiled: torch.Tensor) -> float:
    """The fraction of pixels more than one 8-bit level apart. Not the largest difference: a sharp
    random model amplifies the rounding of convs of other shapes, and a pixel here and there can
    land a few levels off; a halo too short moves more of them (the guards below)."""
    return float(((whole - tiled).abs().amax(0) > EIGHT_BIT).float().mean())


#: The paper's sizes, randomised: neighbour exchanges strong enough that a short halo shows.
SHARP = LNCAConfig(**{**PRESETS["paper"].to_dict(), "steps": 6})
SHARP_DEPTHWISE = LNCAConfig(**{**SHARP.to_dict(), "perception": "depthwise"})
SHARP_RESIDUAL = LNCAConfig(**{**SHARP_DEPTHWISE.to_dict(), "residual": True})
SHARP_DEEP = LNCAConfig(**{**SHARP_DEPTHWISE.to_dict(), "decoder_blocks": 3})


@pytest.mark.parametrize("config, size", [(SHARP, (157, 203)), (SHARP, (64, 64)), (SHARP, (33, 130)),
                                          (SHARP_DEPTHWISE, (157, 203)), (SHARP_RESIDUAL, (90, 70)),
                                          (SHARP_DEEP, (157, 203))])
def test_tiled_output_equals_untiled(config, size):
    model = random_model(config, sharp=True)
    image = torch.rand(3, *size)
    whole = restore_tensor(image, model, tile=0, device="cpu", precision="fp32")
    tile = max(40, model.halo(config.steps) * model.multiple_of)  # a deep decoder's halo is wider
    tiled = restore_tensor(image, model, tile=tile, device="cpu", precision="fp32")
    assert pixels_off(whole, tiled) < SEAMLESS
    grid_cells = math.prod(engine._grid(*size, model.multiple_of))
    with torch.no_grad(), devices.threads_for(grid_cells, torch.device("cpu")):  # as many threads as the engine
        direct = model(image[None])[0]
    assert float((whole - direct).abs().max()) < 1e-5


@pytest.mark.parametrize("config, short_halo, tile", [
    (SHARP, lambda self, steps: steps - 1, 40),  # one NCA step short
    (SHARP_DEPTHWISE, lambda self, steps: steps - 1, 40),
    (SHARP_DEEP, lambda self, steps: steps + 4, 52),  # without the refine blocks' term
])
def test_tiling_with_a_too_small_halo_shows_seams(monkeypatch, config, short_halo, tile):
    """Guards the test above: with a halo too short, tiles disagree with the whole image."""
    model = random_model(config, sharp=True)
    image = torch.rand(3, 157, 203)
    whole = restore_tensor(image, model, tile=0, device="cpu", precision="fp32")
    monkeypatch.setattr(LNCA, "halo", short_halo)
    tiled = restore_tensor(image, model, tile=tile, device="cpu", precision="fp32")
    assert pixels_off(whole, tiled) > SEAMLESS  # what the test above would fail on


def test_stochastic_updates_tile_exactly():
    model = random_model(LNCAConfig(**{**TINY.to_dict(), "update_rate": 0.5}), sharp=True)
    image = torch.rand(3, 90, 70)
    a = restore_tensor(image, model, tile=0, device="cpu", seed=3)
    b = restore_tensor(image, model, tile=32, device="cpu", seed=3)
    assert float((a - b).abs().max()) < EIGHT_BIT
    c = restore_tensor(image, model, tile=0, device="cpu", seed=4)
    assert not torch.equal(a, c)


def test_plan_covers_every_cell_once_with_clamped_halos():
    tiles = plan_tiles(23, 41, core=10, halo=5)
    covered = torch.zeros(23, 41, dtype=torch.int)
    for t in tiles:
        covered[t.core_y.start:t.core_y.stop, t.core_x.start:t.core_x.stop] += 1
        assert t.window_y.start == max(0, t.core_y.start - 5) and t.window_y.stop == min(23, t.core_y.stop + 5)
        assert t.core_y.size <= 10 and t.core_x.size <= 10
    assert bool((covered == 1).all())
    assert len(plan_tiles(23, 41, core=0, halo=5)) == 1


def test_grayscale_stays_single_channel_and_odd_sizes_come_back():
    model = random_model()
    out = restore_tensor(torch.rand(1, 13, 29), model, device="cpu")
    assert out.shape == (1, 13, 29)


def test_repeat_runs_are_identical():
    model = random_model(sharp=True)
    image = torch.rand(3, 40, 40)
    assert torch.equal(restore_tensor(image, model, device="cpu"), restore_tensor(image, model, device="cpu"))


@pytest.mark.parametrize("dtype,peak", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1)])
def test_numpy_arrays_keep_dtype_layout_and_alpha(dtype, peak):
    model = random_model()
    rng = np.random.default_rng(0)
    rgba = (rng.random((18, 22, 4)) * peak).astype(dtype)
    out = restore(rgba, model, device="cpu")
    assert out.dtype == rgba.dtype and out.shape == rgba.shape
    assert np.array_equal(out[..., 3], rgba[..., 3])
    gray = restore(rgba[..., 0], model, device="cpu")
    assert gray.shape == (18, 22)


def test_bad_inputs_and_settings_are_value_errors():
    model = random_model()
    with pytest.raises(ValueError, match="1 or 3 channels"):
        restore_tensor(torch.rand(2, 8, 8), model, device="cpu")
    with pytest.raises(ValueError, match="steps"):
        restore_tensor(torch.rand(3, 8, 8), model, device="cpu", steps=0)
    with pytest.raises(ValueError, match="tile"):
        restore_tensor(torch.rand(3, 8, 8), model, device="cpu", tile=-4)


def test_device_resolution():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="needs a GPU"):
        restore_tensor(torch.rand(3, 8, 8), random_model(), device="cpu", precision="fp16")
    with pytest.raises(DeviceError, match="unknown precision"):
        restore_tensor(torch.rand(3, 8, 8), random_model(), device="cpu", precision="fp8")


def test_auto_precision_is_bf16_only_on_a_cpu_that_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert devices.resolve_precision(cpu, "auto") == "bf16"
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert devices.resolve_precision(cpu, "auto") == "fp32"
    with pytest.raises(DeviceError, match="no bf16"):
        devices.resolve_precision(cpu, "bf16")


@pytest.mark.skipif(not devices.cpu_has_bf16(), reason="this CPU has no bf16 arithmetic")
def test_bf16_restores_within_a_few_levels_of_fp32_and_tiles_exactly():
    model, _ = load_weights(Path(__file__).parent.parent / "weights" / "denoise.safetensors")
    image = torch.rand(3, 96, 80, generator=torch.Generator().manual_seed(0))
    fp32 = restore_tensor(image, model, steps=8, device="cpu", tile=0, precision="fp32")
    bf16 = restore_tensor(image, model, steps=8, device="cpu", tile=0, precision="bf16")
    difference = (fp32 - bf16).abs() * 255
    assert 0 < float(difference.max()) <= 3 and float(difference.mean()) <= 0.5
    tiled = restore_tensor(image, model, steps=8, device="cpu", tile=48, precision="bf16")  # the halo: 48 px
    assert float((tiled - bf16).abs().max()) <= 1 / 255


def test_auto_tile_on_cpu_is_the_default_size():
    assert engine.auto_tile(random_model(), 64, torch.device("cpu")) == engine.CPU_TILE


@pytest.mark.slow
def test_large_image_is_restored_through_tiles_with_bounded_memory():
    """A 2k x 2k image through 256 px tiles: the work per tile stays the same size."""
    model = random_model()
    calls = []
    out = restore_tensor(torch.rand(3, 2048, 2048), model, device="cpu", tile=256,
                         on_progress=lambda done, total: calls.append((done, total)))
    assert out.shape == (3, 2048, 2048) and calls[-1] == (64 * TINY.steps, 64 * TINY.steps)


def test_threads_default_to_free_cores_and_never_exceed_the_usable_cpus(monkeypatch):
    saved = torch.get_num_threads()
    try:
        assert 1 <= devices.set_threads() <= devices.usable_cpus()
        assert devices.set_threads(10_000) == devices.usable_cpus() == torch.get_num_threads()
        monkeypatch.setattr(devices.os, "getloadavg", lambda: (50.0, 0.0, 0.0))  # a very busy machine
        assert devices.default_threads() == 1
        with pytest.raises(ValueError, match="at least 1"):
            devices.set_threads(0)
    finally:
        torch.set_num_threads(saved)


def test_a_tiny_image_is_restored_on_one_thread_and_the_setting_comes_back(monkeypatch):
    saved = torch.get_num_threads()
    seen = []
    model = random_model()
    real = model.restore_padded
    monkeypatch.setattr(model, "restore_padded", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    torch.set_num_threads(2)
    try:
        restore_tensor(torch.rand(3, 64, 64), model, device="cpu")
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_library_calls_refuse_a_tile_smaller_than_the_halo_too():
    model = random_model()  # 4 steps: a halo of 8 cells, 32 px
    with pytest.raises(ValueError, match="smaller than the halo"):
        restore_tensor(torch.rand(3, 64, 64), model, device="cpu", tile=16)


def test_a_model_without_half_support_runs_in_fp32(monkeypatch):
    model = random_model()
    monkeypatch.setattr(model, "supports_half", False)
    assert devices.resolve_precision(torch.device("cpu"), "auto", model.supports_half) == "fp32"
    with pytest.raises(DeviceError, match="fp32 only"):
        restore_tensor(torch.rand(3, 8, 8), model, device="cpu", precision="bf16")


def test_progress_counts_nca_steps_so_a_one_tile_image_moves_too():
    calls = []
    restore_tensor(torch.rand(3, 40, 40), random_model(), steps=5, device="cpu", tile=0,
                   on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]


def test_the_automatic_tile_is_never_smaller_than_the_halo():
    model = random_model()
    assert engine.auto_tile(model, 4, torch.device("cpu")) == engine.CPU_TILE
    assert engine.auto_tile(model, 1000, torch.device("cpu")) == model.halo(1000) * model.multiple_of
