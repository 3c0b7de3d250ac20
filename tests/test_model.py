"""The model: the paper's sizes, shapes, padding, the update mask, and the safetensors round trip."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY, random_model
from lnca_cli.hub import WeightsError, load_weights, read_metadata, save_weights
from lnca_cli.model import LNCA, PRESETS, LNCAConfig, PixelNCA, count_parameters, pad_to_multiple, update_mask


def test_paper_preset_has_the_papers_parameter_counts():
    model = LNCA(PRESETS["paper"])
    assert count_parameters(model.encoder) + count_parameters(model.decoder) == 3681  # "about 3.7k"
    assert count_parameters(model.nca) == 46769  # "about 47k"
    assert PRESETS["paper"].cell_channels == 64


def test_wide_preset_sizes():
    model = LNCA(PRESETS["wide"])
    assert count_parameters(model.encoder) + count_parameters(model.decoder) == 17769
    assert 4 * count_parameters(model) < 1_000_000  # ships under 1 MB in float32


def test_depthwise_perception_gives_every_channel_a_3x3_view_for_a_few_parameters():
    gate, depthwise = LNCA(PRESETS["wide"]), LNCA(PRESETS["wide-dw"])
    assert depthwise.nca.rule.split.kernel_size == (3, 3)
    assert depthwise.nca.rule.spatial_gate.kernel_size == (1, 1)
    assert gate.nca.rule.split.kernel_size == (1, 1)
    extra = count_parameters(depthwise) - count_parameters(gate)
    assert extra == 2 * 128 * 8 - 128 * 8  # split: 8 more weights per channel; gate: 8 fewer per channel
    assert 4 * count_parameters(depthwise) < 1_000_000


def test_a_cell_sees_one_neighbour_further_per_step_with_either_perception():
    for perception in ("gate", "depthwise"):
        model = random_model(LNCAConfig(**{**TINY.to_dict(), "perception": perception}), sharp=True)
        cells = model.nca.seed(torch.zeros(1, TINY.latent_channels, 9, 9))
        poked = cells.clone()
        poked[0, 4, 4, 0] = 5.0
        with torch.no_grad():
            changed = (model.nca.run(poked, 2) - model.nca.run(cells, 2)).abs().sum(-1)[0] > 0
        rows, cols = changed.nonzero(as_tuple=True)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 6, 2, 6), perception


def test_unknown_perception_is_refused():
    with pytest.raises(ValueError, match="perception"):
        LNCAConfig(perception="telepathy")


@pytest.mark.parametrize("size", [(32, 32), (37, 50), (1, 1), (3, 7), (64, 17)])
def test_any_size_is_padded_and_cropped_back(size):
    model = random_model()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert 0 <= float(y.min()) and float(y.max()) <= 1


def test_latent_grid_is_four_times_smaller_per_side():
    model = random_model()
    with torch.no_grad():
        z, skip = model.encoder(torch.rand(1, 3, 32, 48))
    assert z.shape == (1, TINY.latent_channels, 8, 12)
    assert skip.shape == (1, TINY.ae_channels, 16, 24)
    cells = model.nca.seed(z)
    assert cells.shape == (1, 8, 12, TINY.cell_channels)  # channels-last cells
    assert torch.equal(cells[..., : TINY.latent_channels], z.permute(0, 2, 3, 1))
    assert float(cells[..., TINY.latent_channels: 2 * TINY.latent_channels].mean()) == 0.5
    assert torch.equal(model.nca.output(cells), torch.full_like(z, 0.5))


def test_nca_never_updates_its_input_channels():
    model = random_model(sharp=True)
    cells = model.nca.seed(torch.rand(1, TINY.latent_channels, 6, 6))
    after = model.nca.run(cells, 3)
    assert torch.equal(after[..., : TINY.latent_channels], cells[..., : TINY.latent_channels])
    assert not torch.equal(after, cells)


def test_pad_to_multiple_reflects_and_falls_back_for_tiny_images():
    x = torch.arange(6.0).reshape(1, 1, 1, 6)
    padded = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (4, 8)
    assert padded[0, 0, 0, 6:].tolist() == [5.0, 5.0]  # height 1: replicate, not reflect
    y = torch.arange(30.0).reshape(1, 1, 5, 6)
    assert torch.equal(pad_to_multiple(y, 4)[..., 5, :6], y[..., 3, :])  # reflection


def test_update_mask_is_a_function_of_global_cells():
    seeds = torch.tensor([7])
    whole = update_mask(seeds, 3, (0, 0), (20, 20), 0.5)
    part = update_mask(seeds, 3, (5, 8), (10, 6), 0.5)
    assert torch.equal(whole[:, 5:15, 8:14], part)
    assert 0.4 < float(whole.mean()) < 0.6
    assert not torch.equal(whole, update_mask(seeds, 4, (0, 0), (20, 20), 0.5))
    assert not torch.equal(whole, update_mask(torch.tensor([8]), 3, (0, 0), (20, 20), 0.5))


def test_stochastic_model_is_deterministic_for_a_seed():
    model = random_model(LNCAConfig(**{**TINY.to_dict(), "update_rate": 0.5}), sharp=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b)


def test_pixel_nca_baseline_runs_on_pixels():
    model = PixelNCA(TINY).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert model(x, steps=2).shape == x.shape
    assert model.nca.rule.norm1.weight.numel() == 3 + 3 + TINY.hidden_channels


def test_config_round_trip_and_validation():
    assert LNCAConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    residual = LNCAConfig(**{**TINY.to_dict(), "residual": True})
    assert LNCAConfig.from_dict(json.loads(json.dumps(residual.to_dict()))) == residual
    assert LNCAConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "residual"}) == TINY  # older files
    with pytest.raises(ValueError, match="unknown config fields: colour"):
        LNCAConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="downsample"):
        LNCAConfig(downsample=8)
    with pytest.raises(ValueError, match="update_rate"):
        LNCAConfig(update_rate=0)


def test_weights_round_trip_through_safetensors(tmp_path):
    model = random_model(sharp=True)
    path = tmp_path / "m.safetensors"
    save_weights(model, path, {"task": "deblur"})
    loaded, metadata = load_weights(path)
    assert loaded.config == model.config and metadata["task"] == "deblur"
    assert not loaded.training
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*.tmp"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a temporary file's 0600


def test_weights_files_name_their_architecture_and_an_unknown_one_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(random_model(), path, {"task": "denoise"})
    assert read_metadata(path)["lnca_arch"] == "lnca"
    state = {k: v.contiguous() for k, v in random_model().state_dict().items()}
    save_file(state, str(path), metadata={"lnca_config": json.dumps(TINY.to_dict())})  # as the first files were
    assert load_weights(path)[0].arch == "lnca"
    save_file(state, str(path), metadata={"lnca_config": json.dumps(TINY.to_dict()), "lnca_arch": "vitca"})
    with pytest.raises(WeightsError, match="architecture 'vitca' is unknown"):
        load_weights(path)


def test_the_engine_sees_the_model_through_its_face():
    model = LNCA(TINY)
    assert model.multiple_of == 4 and model.halo(10) == 14 and model.supports_half
    assert model.bytes_per_cell() > 4 * TINY.cell_channels


def test_weights_config_mismatch_names_what_differs(tmp_path):
    path = tmp_path / "m.safetensors"
    state = {k: v.contiguous() for k, v in random_model().state_dict().items()}
    wider = json.dumps({**TINY.to_dict(), "latent_channels": 12})
    save_file(state, str(path), metadata={"lnca_config": wider})
    with pytest.raises(WeightsError, match=r"weights do not match the model config: .* has shape .*, config expects"):
        load_weights(path)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_weights_are_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_weights(path)


def test_safetensors_without_config_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="not an lnca weights file"):
        load_weights(path)


def test_oracle_decodes_the_clean_latent_with_the_degraded_skip():
    model = random_model(sharp=True)
    clean, degraded = torch.rand(1, 3, 18, 22), torch.rand(1, 3, 18, 22)
    with torch.no_grad():
        out = model.oracle(clean, degraded)
        z_clean, _ = model.encoder(pad_to_multiple(clean))
        _, skip = model.encoder(pad_to_multiple(degraded))
        expected = model.decoder(z_clean, skip)[..., :18, :22]
    assert torch.allclose(out, expected, atol=1e-6)  # the model runs channels_last: rounding differs
    assert not torch.equal(out, model.oracle(degraded, degraded))


@pytest.mark.parametrize("perception", ["gate", "depthwise"])
def test_a_wider_rule_grown_from_a_narrower_one_restores_exactly_as_it_did(perception):
    narrow_config = LNCAConfig(**{**TINY.to_dict(), "perception": perception})
    narrow = random_model(narrow_config, sharp=True)
    with torch.no_grad():  # sharp leaves beta and gamma at zero: make both residual branches count
        narrow.nca.rule.beta.normal_()
        narrow.nca.rule.gamma.normal_()
    wide = LNCA(LNCAConfig(**{**narrow_config.to_dict(), "embed_dim": 2 * TINY.embed_dim, "steps": 7})).eval()
    image = torch.rand(2, 3, 20, 24)
    assert not torch.allclose(wide(image, steps=3), narrow(image, steps=3))
    wide.grow_from(narrow)
    torch.testing.assert_close(wide(image, steps=3), narrow(image, steps=3))
    rule = wide.nca.rule
    assert rule.project.weight[:, TINY.embed_dim:].abs().sum() == 0  # the new channels are read by no one yet
    assert rule.expand.weight[TINY.embed_dim // 2: TINY.embed_dim].abs().sum() > 0  # ... but are computed


def test_a_model_grown_with_more_decoder_blocks_restores_exactly_as_it_did():
    small = random_model(LNCAConfig(**{**TINY.to_dict(), "decoder_blocks": 1}), sharp=True)
    deep = LNCA(LNCAConfig(**{**TINY.to_dict(), "decoder_blocks": 3, "embed_dim": 2 * TINY.embed_dim})).eval()
    image = torch.rand(2, 3, 20, 24)
    deep.grow_from(small)
    torch.testing.assert_close(deep(image, steps=3), small(image, steps=3))
    torch.testing.assert_close(deep.decoder.refine[0].conv2.weight, small.decoder.refine[0].conv2.weight)
    assert deep.decoder.refine[1].conv2.weight.abs().sum() == 0  # a new block passes its input through
    with pytest.raises(ValueError, match="only grow"):
        small.grow_from(deep)
    for preset, blocks in (("wide-dw-deep", 2), ("wide-dw-deep6", 6)):
        assert PRESETS[preset] == LNCAConfig(**{**PRESETS["wide-dw"].to_dict(), "decoder_blocks": blocks})


def test_a_model_grown_with_wider_decoder_blocks_restores_exactly_as_it_did():
    small = random_model(LNCAConfig(**{**TINY.to_dict(), "decoder_blocks": 2}), sharp=True)
    wide = LNCA(LNCAConfig(**{**TINY.to_dict(), "decoder_blocks": 3, "refine_expand": 4})).eval()
    image = torch.rand(2, 3, 20, 24)
    wide.grow_from(small)
    torch.testing.assert_close(wide(image, steps=3), small(image, steps=3))
    inner = TINY.ae_channels
    block, narrow_block = wide.decoder.refine[1], small.decoder.refine[1]
    torch.testing.assert_close(block.conv2.weight[:, :inner], narrow_block.conv2.weight)
    assert block.conv2.weight[:, inner:].abs().sum() == 0  # the new inner channels are read by no one yet
    assert block.conv1.weight[inner:].abs().sum() > 0  # ... but are computed
    with pytest.raises(ValueError, match="only grow"):
        small.grow_from(wide)
    assert PRESETS["wide-dw-deep6x4"] == LNCAConfig(**{**PRESETS["wide-dw-deep6"].to_dict(), "refine_expand": 4})


def test_a_model_grown_with_a_wider_autoencoder_restores_exactly_as_it_did():
    small = random_model(LNCAConfig(**{**TINY.to_dict(), "decoder_blocks": 2, "refine_expand": 2}), sharp=True)
    wide = LNCA(LNCAConfig(**{**TINY.to_dict(), "decoder_blocks": 3, "ae_channels": 2 * TINY.ae_channels})).eval()
    image = torch.rand(2, 3, 20, 24)
    wide.grow_from(small)
    torch.testing.assert_close(wide(image, steps=3), small(image, steps=3))
    old = TINY.ae_channels
    merge = wide.decoder.merge[0].weight
    assert merge[:old, old:].abs().sum() == 0  # the old channels read none of the new ones
    assert merge[old:].abs().sum() > 0  # ... which are computed, for the new layers that read them
    assert wide.decoder.out[0].weight[old:].abs().sum() == 0  # a ConvTranspose2d's weight is (in, out, ...)
    assert wide.encoder.down[0].weight[:, old:].abs().sum() == 0
    with pytest.raises(ValueError, match="only grow"):
        small.grow_from(wide)
    assert PRESETS["wide-dw-deep6-ae32"] == LNCAConfig(**{**PRESETS["wide-dw-deep6"].to_dict(), "ae_channels": 32,
                                                          "refine_expand": 2})
    assert PRESETS["wide-dw-deep8-ae64"] == LNCAConfig(**{**PRESETS["wide-dw-deep6"].to_dict(), "ae_channels": 64,
                                                          "decoder_blocks": 8})


def test_a_rule_grows_only_from_a_narrower_one_of_the_same_model():
    narrow = random_model()
    other_latent = LNCA(LNCAConfig(**{**TINY.to_dict(), "embed_dim": 32, "latent_channels": 4}))
    with pytest.raises(ValueError, match="only the rule's width"):
        other_latent.grow_from(narrow)
    with pytest.raises(ValueError, match="narrower"):
        narrow.nca.rule.grow_from(LNCA(LNCAConfig(**{**TINY.to_dict(), "embed_dim": 32})).nca.rule)
    assert PRESETS["wide-dw-256"] == LNCAConfig(**{**PRESETS["wide-dw"].to_dict(), "embed_dim": 256})
