"""Geometric self-ensemble: the views, their inverses, and what restore_tensor, lnca eval, the CLI and
bench quality make of --ensemble."""
import json

import pytest
import torch

from conftest import lnca, random_model, write_photo
from lnca_cli import bench
from lnca_cli.engine import restore_tensor
from lnca_cli.ensemble import VIEWS, check_ensemble, from_view, to_view, view_size
from lnca_cli.errors import SettingsError
from lnca_cli.evaluate import evaluate


def test_each_view_is_undone_by_from_view_and_the_eight_differ():
    x = torch.rand(2, 3, 5, 7)
    seen = []
    for view in range(8):
        assert torch.equal(from_view(to_view(x, view), view), x)
        assert to_view(x, view).shape[-2:] == view_size(5, 7, view)
        seen.append(to_view(x[0, 0], view).reshape(-1))
    assert len({tuple(v.tolist()) for v in seen}) == 8


def test_the_view_sets_are_the_half_turn_the_rotations_and_all_symmetries():
    x = torch.rand(4, 6)
    rotations = [torch.rot90(x, k, (-2, -1)) for k in range(4)]
    assert torch.equal(to_view(x, VIEWS[2][1]), rotations[2])
    for views, expected in ((VIEWS[2], rotations[::2]), (VIEWS[4], rotations)):
        got = [to_view(x, v) for v in views]
        assert all(any(g.shape == e.shape and torch.equal(g, e) for g in got) for e in expected)
    assert VIEWS[8] == tuple(range(8))


@pytest.mark.parametrize("bad", [0, 3, 16, -1])
def test_an_unknown_count_is_a_settings_error(bad):
    with pytest.raises(SettingsError, match="--ensemble must be one of 1, 2, 4, 8"):
        check_ensemble(bad)
    with pytest.raises(SettingsError):
        restore_tensor(torch.rand(3, 8, 8), random_model(), device="cpu", ensemble=bad)


@pytest.mark.parametrize("views", [2, 4, 8])
def test_restore_averages_the_views_restored_and_mapped_back(views):
    model = random_model(sharp=True)
    image = torch.rand(3, 44, 60, generator=torch.Generator().manual_seed(1))
    one = restore_tensor(image, model, steps=3, device="cpu", tile=0)
    by_hand = sum(from_view(restore_tensor(to_view(image, v), model, steps=3, device="cpu", tile=0), v)
                  for v in VIEWS[views]) / views
    got = restore_tensor(image, model, steps=3, device="cpu", tile=0, ensemble=views)
    assert got.shape == image.shape
    torch.testing.assert_close(got, by_hand)
    assert not torch.allclose(got, one)  # the views of a random model differ
    tiled = restore_tensor(image, model, steps=3, device="cpu", tile=28, ensemble=views)
    torch.testing.assert_close(tiled, got)  # each view is tiled like any image


def test_a_grayscale_image_stays_grayscale_and_progress_counts_every_view():
    calls = []
    out = restore_tensor(torch.rand(1, 12, 20), random_model(), steps=2, device="cpu", tile=0, ensemble=4,
                         on_progress=lambda done, total: calls.append((done, total)))
    assert out.shape == (1, 12, 20)
    assert calls == [(i, 8) for i in range(1, 9)]


def test_eval_reports_the_views_and_refuses_them_for_the_oracle(tmp_path):
    for i in range(2):
        write_photo(tmp_path / f"{i}.png", size=(20, 16), seed=i)
    model = random_model(sharp=True)
    report = evaluate(model, tmp_path, "gaussian:25", steps=2, ensemble=2)
    assert report.to_dict()["ensemble"] == 2
    assert report.mean()["psnr"] != evaluate(model, tmp_path, "gaussian:25", steps=2).mean()["psnr"]
    with pytest.raises(SettingsError, match="oracle"):
        evaluate(model, tmp_path, "gaussian:25", oracle=True, ensemble=2)


def test_cli_restores_with_views_and_rejects_a_bad_count_in_one_line(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    result = lnca("denoise", tmp_path / "a.png", "--model", tiny_weights, "--ensemble", "3")
    assert result.exit_code == 2 and "--ensemble must be one of" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "a_denoise.png").exists()
    result = lnca("denoise", tmp_path / "a.png", "--model", tiny_weights, "--ensemble", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a_denoise.png").exists()
    result = lnca("eval", "--data", tmp_path, "--model", tiny_weights, "--ensemble", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ensemble"] == 2


def test_bench_quality_has_a_row_per_count_of_views(tmp_path):
    write_photo(tmp_path / "a.png", size=(24, 20))
    model = random_model(sharp=True)
    result = bench.bench_quality(tmp_path, {"denoise": model}, ("gaussian:25",), peers=(), ensembles=(1, 2))
    rows = {r["method"]: r for r in result["tables"][0]["rows"]}
    assert list(rows) == ["input", "lnca", "lnca x2"] and "2 views averaged" in rows["lnca x2"]["settings"]
    reference = evaluate(model, tmp_path, "gaussian:25", ensemble=2).mean()["psnr"]
    assert rows["lnca x2"]["psnr"] == pytest.approx(reference)
    with pytest.raises(SettingsError):
        bench.bench_quality(tmp_path, {"denoise": model}, ("gaussian:25",), peers=(), ensembles=(3,))
