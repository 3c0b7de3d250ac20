"""evaluate: the benchmark protocol, on tiny random models (their scores mean nothing)."""
import dataclasses
import json

import pytest
import torch
from PIL import Image
from rich.console import Console

from conftest import random_model, write_photo
from lnca_cli.degrade import parse_degradation
from lnca_cli.engine import restore_tensor
from lnca_cli.cli.eval_report import format_table
from lnca_cli.evaluate import (GAP, LABEL_HEIGHT, METRICS, EvalReport, ImageScore, evaluate, label_strip, score_image,
                               side_by_side)
from lnca_cli.hub import load_model
from lnca_cli.images import read_image
from lnca_cli.metrics import psnr, quantize8, ssim

SIZES = {"a.png": ((24, 20), "RGB"), "b.png": ((20, 16), "L"), "c.bmp": ((16, 24), "RGB")}


@pytest.fixture
def photos(tmp_path):
    """A folder of three small images (one grayscale, sizes differ) and things that are not images."""
    folder = tmp_path / "clean"
    folder.mkdir()
    for seed, (name, (size, mode)) in enumerate(SIZES.items()):
        write_photo(folder / name, size=size, mode=mode, seed=seed)
    (folder / "notes.txt").write_text("not an image")
    (folder / "nested").mkdir()
    write_photo(folder / "nested" / "d.png")
    return folder


def without_time(report: EvalReport) -> list[tuple]:
    return [(s.name, s.psnr_input, s.ssim_input, s.psnr, s.ssim) for s in report.images]


def test_scores_each_image_in_sorted_order_and_their_mean(photos):
    seen = []
    report = evaluate(random_model(), photos, "gaussian:25", on_image=seen.append)
    assert [s.name for s in report.images] == ["a.png", "b.png", "c.bmp"]
    assert seen == report.images
    assert (report.degradation, report.model, report.steps) == ("gaussian:25", "unnamed", 4)
    mean = report.mean()
    for key in METRICS:
        assert mean[key] == pytest.approx(sum(getattr(s, key) for s in report.images) / 3)


def test_is_reproducible_and_seeded_per_image(photos):
    model = random_model()
    first = evaluate(model, photos, "gaussian:25", seed=3)
    assert without_time(evaluate(model, photos, "gaussian:25", seed=3)) == without_time(first)
    # The i-th image's noise depends on seed + i only: dropping later images changes nothing.
    assert without_time(evaluate(model, photos, "gaussian:25", seed=3, limit=2)) == without_time(first)[:2]
    other = evaluate(model, photos, "gaussian:25", seed=4)
    assert all(a.psnr_input != b.psnr_input for a, b in zip(first.images, other.images))


def test_input_psnr_matches_the_noise_level(photos):
    # sigma 25/255 gives 20.2 dB before clipping; clipping the noisy image to [0, 1] removes some error.
    report = evaluate(random_model(), photos, "gaussian:25")
    assert all(20.0 < s.psnr_input < 21.5 for s in report.images)
    weaker = evaluate(random_model(), photos, "gaussian:5")
    assert all(33.0 < s.psnr_input < 35.0 for s in weaker.images)


def test_scores_the_8_bit_images_and_feeds_the_model_unclipped_noise(photos):
    model = random_model()
    score = evaluate(model, photos, "gaussian:25", seed=7).images[1]
    clean = read_image(photos / "b.png")[0][None]  # grayscale, the second image: seeded 7 + 1
    degraded = parse_degradation("gaussian:25")(clean, torch.Generator().manual_seed(8))
    assert degraded.min() < 0 and degraded.max() > 1
    restored = restore_tensor(degraded[0], model, device="cpu", seed=8)[None]
    assert score.psnr == pytest.approx(psnr(quantize8(restored), clean).item(), abs=1e-5)
    assert score.ssim == pytest.approx(ssim(quantize8(restored), clean).item(), abs=1e-6)
    assert score.psnr != pytest.approx(psnr(restored, clean).item(), abs=1e-5)
    assert score.psnr_input == pytest.approx(psnr(quantize8(degraded), clean).item(), abs=1e-5)
    assert score.psnr_input != pytest.approx(psnr(degraded, clean).item(), abs=0.1)


def test_save_writes_the_three_panels_per_image(photos, tmp_path):
    evaluate(random_model(), photos, "motion:5:30", save=tmp_path / "out" / "panels")
    saved = sorted((tmp_path / "out" / "panels").iterdir())
    assert [p.name for p in saved] == ["a.png", "b.png", "c.png"]
    for path, ((width, height), mode) in zip(saved, SIZES.values()):
        with Image.open(path) as image:
            assert image.size == (3 * width + 2 * GAP, height + LABEL_HEIGHT)
            assert image.mode == mode


def test_each_panel_is_labelled():
    strip = label_strip(["degraded 20.00 dB", "restored", "clean"], [120, 120, 120], 3)
    assert strip.shape == (3, LABEL_HEIGHT, 360 + 2 * GAP)
    for start in (0, 120 + GAP, 240 + 2 * GAP):  # dark text at the start of every panel, white after the gaps
        assert float(strip[:, :, start:start + 30].min()) < 0.5
    assert float(strip[:, :, 125 + 2 * GAP + 60:240 + 2 * GAP].min()) == 1.0


def test_side_by_side_puts_clipped_panels_between_white_gaps():
    degraded = torch.full((3, 2, 5), 1.5)
    restored, clean = torch.zeros(3, 2, 5), torch.full((3, 2, 5), 0.25)
    row = side_by_side(degraded, restored, clean)
    assert row.shape == (3, 2, 15 + 2 * GAP)
    assert torch.equal(row[..., :5], torch.ones(3, 2, 5))
    assert torch.equal(row[..., 5 : 5 + GAP], torch.ones(3, 2, GAP))
    assert torch.equal(row[..., 5 + GAP : 10 + GAP], restored)
    assert torch.equal(row[..., -5:], clean)


def test_to_dict_is_json_with_the_protocol(photos, tiny_weights):
    report = evaluate(load_model(tiny_weights), photos, "masked:0.5", steps=2, seed=1)
    data = json.loads(json.dumps(report.to_dict()))
    assert (data["model"], data["steps"], data["device"]) == (tiny_weights, 2, "cpu")
    assert data["protocol"]["seed"] == 1
    assert data["protocol"]["ssim"] == {"window": "gaussian", "window_size": 11, "sigma": 1.5, "k1": 0.01,
                                        "k2": 0.03, "channels": "each separately, averaged"}
    assert "flattest" in data["protocol"]["mottle"]
    assert data["mean"] == pytest.approx(report.mean())
    assert data["images"][0] == pytest.approx(dataclasses.asdict(report.images[0]))


def test_format_table_has_a_row_per_image_and_a_mean_row():
    scores = [ImageScore("x.png", 20.0, 0.5, 30.0, 0.9, -2.0, 0.5, 1.0, 0.5, 1.0),
              ImageScore("y.png", 22.0, 0.7, 32.0, 0.8, -1.0, 0.0, 2.0, 1.5, 3.0)]
    table = format_table(EvalReport("gaussian:25", "denoise", 64, scores))
    assert [c.header for c in table.columns] == ["image", "input PSNR", "input SSIM", "PSNR", "SSIM", "bias R/G/B",
                                                 "mottle", "seconds"]
    assert table.row_count == 3 and table.rows[-1].style == "bold"
    console = Console(record=True, width=120)
    console.print(table)
    mean_line = next(line for line in console.export_text().splitlines() if "mean" in line)
    assert [cell.strip() for cell in mean_line.split("│")[1:-1]] == ["mean", "21.00", "0.6000", "31.00", "0.8500",
                                                                     "-1.5/+0.2/+1.5", "1.00", "2.00"]


def test_a_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images"):
        evaluate(random_model(), tmp_path, "gaussian:25")
    with pytest.raises(ValueError, match="not a folder"):
        evaluate(random_model(), tmp_path / "missing", "gaussian:25")


@pytest.mark.parametrize("spec, limit", [("gaussian", None), ("blur:3", None), ("gaussian:-1", None), ("gaussian:25", 0)])
def test_bad_settings_fail_before_any_work(photos, tmp_path, spec, limit):
    with pytest.raises(ValueError, match="degradation" if limit is None else "limit"):
        evaluate(random_model(), photos, spec, limit=limit, save=tmp_path / "panels")
    assert not (tmp_path / "panels").exists()


# ---------------------------------------------------------------- lnca eval


def test_lnca_eval_prints_a_table_and_json(tmp_path, tiny_weights):
    from typer.testing import CliRunner

    from lnca_cli.cli import app

    data = tmp_path / "clean"
    data.mkdir()
    for i in range(2):
        write_photo(data / f"{i}.png", size=(24, 20), seed=i)
    runner = CliRunner()
    table = runner.invoke(app, ["eval", "--data", str(data), "-m", tiny_weights, "--noise", "gaussian:15"])
    assert table.exit_code == 0, table.output
    assert "mean" in table.stdout and "0.png" in table.stdout
    as_json = runner.invoke(app, ["eval", "--data", str(data), "-m", tiny_weights, "--json", "--save",
                                  str(tmp_path / "panels")])
    report = json.loads(as_json.stdout)
    assert report["degradation"] == "gaussian:25" and len(report["images"]) == 2
    assert len(list((tmp_path / "panels").glob("*.png"))) == 2
    bad = runner.invoke(app, ["eval", "--data", str(data), "-m", tiny_weights, "--noise", "blur:3"])
    assert bad.exit_code == 2 and "unknown degradation" in bad.stderr


def test_oracle_scores_the_autoencoder_ceiling(tmp_path):
    from lnca_cli.engine import oracle_tensor  # noqa: PLC0415

    for i in range(2):
        write_photo(tmp_path / f"{i}.png", size=(24, 20), mode="L" if i else "RGB", seed=i)
    model = random_model(sharp=True)
    report = evaluate(model, tmp_path, "gaussian:25", oracle=True)
    assert report.model.endswith("(oracle)")
    clean, _ = read_image(tmp_path / "1.png")
    degraded = parse_degradation("gaussian:25")(clean[None], torch.Generator().manual_seed(1))[0]
    expected = score_image("1.png", clean, degraded, oracle_tensor(clean, degraded, model), 0.0)
    assert report.images[1].psnr == pytest.approx(expected.psnr)


def test_the_colour_bias_is_the_mean_signed_error_per_channel_in_levels():
    clean = torch.full((3, 8, 8), 100 / 255)
    restored = clean.clone()
    restored[0] -= 3 / 255  # 3 levels too dark in red
    score = score_image("x.png", clean, clean, restored, 0.0)
    assert (score.bias_r, score.bias_g, score.bias_b) == pytest.approx((-3, 0, 0), abs=1e-3)


def _standard_set(tmp_path, name: str, images: int):
    folder = tmp_path / name
    folder.mkdir()
    for i in range(images):
        write_photo(folder / f"{i:02d}.png", size=(16, 12), seed=i)
    return folder


def test_a_standard_set_shows_its_target_and_whether_it_was_met(tmp_path):
    from lnca_cli.targets import DEBLUR_GAIN_DB

    kodak = _standard_set(tmp_path, "Kodak24", 24)
    report = evaluate(random_model(), kodak, "gaussian:25")
    (target,) = report.targets
    assert target.psnr == 31.68 and target.reached == report.mean()["psnr"]
    assert target.met is False  # an untrained model is far from CBM3D
    written = report.to_dict()["targets"][0]
    assert written["met"] is False and written["margin_db"] == round(report.mean()["psnr"] - 31.68, 2)
    assert "target >= 31.68 dB (CBM3D, published)" in str(format_table(report).caption)

    blurred = evaluate(random_model(), kodak, "motion:7", limit=24)  # a limit of the whole set is the set
    (blur,) = blurred.targets
    assert blur.psnr == round(blurred.mean()["psnr_input"] + DEBLUR_GAIN_DB, 2)
    assert blur.what == f"the blurred input + {DEBLUR_GAIN_DB} dB"


def test_a_subset_or_an_unknown_folder_has_no_target(tmp_path):
    kodak = _standard_set(tmp_path, "Kodak24", 24)
    assert evaluate(random_model(), kodak, "gaussian:25", limit=4).targets == []
    assert evaluate(random_model(), kodak, "gaussian:15").targets == []  # no target at that level
    other = _standard_set(tmp_path, "holiday", 3)
    report = evaluate(random_model(), other, "gaussian:25")
    assert report.targets == [] and format_table(report).caption is None


def test_the_targets_rules():
    from lnca_cli.targets import targets_for

    (strict,) = targets_for("CBSD68", 68, "gaussian:50", psnr=27.38, psnr_input=15.0)
    assert strict.strictly_above and not strict.met  # "> 27.38": reaching it is not enough
    (reach,) = targets_for("CBSD68", 68, "gaussian:25", psnr=30.71, psnr_input=20.5)
    assert reach.met and "met by 0.00 dB" in reach.line()
    (blur,) = targets_for("Kodak24", 24, "motion:15", psnr=25.0, psnr_input=24.06)
    assert blur.psnr == 25.56 and not blur.met and "short by 0.56 dB" in blur.line()
    assert targets_for("CBSD68", 67, "gaussian:25", 30.0, 20.0) == []
