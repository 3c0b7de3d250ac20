"""lnca bench at tiny sizes: structure and invariants, never wall-clock thresholds.

The tests that compare memory measured at tiny sizes are slow (`-m slow`): what a process's resident
memory shows for a few MB depends on the machine and its load, and on a busy one they failed
("memory did not grow with the input") where a rerun passed."""
import json

import pytest
import torch

import lnca_cli.devices as devices
from conftest import lnca, random_model, write_photo
from lnca_cli import bench
from lnca_cli.bench.peers import PEERS, Peer, available
from lnca_cli.bench.quality import _peer_restore
from lnca_cli.bench.speed import _speed_summary
from lnca_cli.cli.bench_report import tables_of
from lnca_cli.errors import SettingsError
from lnca_cli.evaluate import evaluate

TINY_NCA = bench.NCASettings(sizes=(32, 64), train_sizes=(16, 32), steps=4, train_steps=2, repeats=1, warmup=0,
                             budget_mib=24, isolate=False)
NCA_ARGS = ["--sizes", "32,64", "--train-sizes", "16,32", "--steps", "4", "--train-steps", "2", "--repeats", "1",
            "--warmup", "0", "--budget-mib", "24", "--no-isolate"]


MEASURES_MEMORY = pytest.mark.slow  # see the module's docstring


@pytest.fixture(scope="module")
def nca_result():
    return bench.bench_nca(TINY_NCA)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    write_photo(folder / "a.png", size=(40, 32), seed=1)
    write_photo(folder / "b.png", size=(32, 36), mode="L", seed=2)
    return folder


@MEASURES_MEMORY
def test_nca_latent_needs_less_memory_and_fits_larger_inputs(nca_result):
    for mode in ("inference", "train"):
        for row in nca_result[mode]:
            assert row["latent_mib"] < row["pixel_mib"], (mode, row)
    assert nca_result["max_side_latent"] > nca_result["max_side_pixel"]
    assert nca_result["train_max_side_latent"] > nca_result["train_max_side_pixel"]


@MEASURES_MEMORY
def test_nca_ratios_come_from_the_reported_figures(nca_result):
    last = nca_result["inference"][-1]
    assert nca_result["at_side"] == last["side"] == 64
    assert nca_result["memory_ratio"] == pytest.approx(last["latent_mib"] / last["pixel_mib"])
    assert nca_result["latency_ratio"] == pytest.approx(last["latent_ms"] / last["pixel_ms"])
    assert nca_result["memory_saving_pct"] == pytest.approx(100 * (1 - nca_result["memory_ratio"]))
    sides = nca_result["max_side_latent"] / nca_result["max_side_pixel"]
    assert nca_result["input_ratio"] == pytest.approx(sides**2)


@MEASURES_MEMORY
def test_nca_largest_inputs_are_within_the_budget(nca_result):
    for key in ("max_side_mib", "train_max_side_mib"):
        assert all(0 < mib <= TINY_NCA.budget_mib for mib in nca_result[key].values())
    assert all(side % 4 == 0 for side in (nca_result["max_side_latent"], nca_result["max_side_pixel"]))


@MEASURES_MEMORY
def test_inference_memory_does_not_depend_on_the_steps():
    # Why inference memory may be measured at MEMORY_STEPS steps: every step's activations are freed.
    few, many = (bench.nca_memory("pixel", 96, "inference", steps, TINY_NCA) for steps in (2, 8))
    assert many == pytest.approx(few, rel=0.1)


@MEASURES_MEMORY
def test_a_measurement_in_a_fresh_process_agrees_with_one_here():
    isolated = bench.NCASettings(**{**TINY_NCA.__dict__, "isolate": True})
    here, there = (bench.nca_memory("pixel", 96, "inference", 2, s) for s in (TINY_NCA, isolated))
    assert there == pytest.approx(here, rel=0.25)


def test_find_max_side_checks_its_prediction_and_shrinks_when_over():
    def truth(side):  # linear in pixels, with a jump above 40 that a fit of the small sizes cannot see
        return 1000 + 3 * side * side + (5000 if side > 40 else 0)

    measured = []
    side, used = bench.find_max_side([(16 * 16, truth(16)), (32 * 32, truth(32))], 12_000,
                                     lambda side: measured.append(side) or truth(side))
    assert measured[0] == 60 and truth(60) > 12_000  # the fit's guess was checked, found over, and shrunk
    assert (side, used) == (44, truth(44))  # the largest multiple of 4 within the budget: truth(48) > 12,000


@MEASURES_MEMORY
def test_nca_cli_prints_one_json_object_and_writes_the_plot(tmp_path):
    result = lnca("bench", "nca", *NCA_ARGS, "--json", "--out", tmp_path / "r.json", "--plot", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    for key in ("memory_ratio", "latency_ratio", "max_side_latent", "max_side_pixel", "machine", "inference"):
        assert key in printed
    assert json.loads((tmp_path / "r.json").read_text())["max_side_pixel"] == printed["max_side_pixel"]
    assert (tmp_path / "p.png").stat().st_size > 0


def test_nca_cli_rejects_bad_sizes_in_one_line():
    result = lnca("bench", "nca", "--sizes", "32,abc")
    assert result.exit_code == 2 and "--sizes" in result.stderr and "Traceback" not in result.output
    result = lnca("bench", "nca", "--sizes", "30", "--no-isolate")
    assert result.exit_code == 2 and "multiples of 4" in result.stderr


def test_quality_rows_per_degradation_and_lnca_matches_lnca_eval(photos):
    model = random_model()
    result = bench.bench_quality(photos, {"denoise": model, "deblur": model}, ("gaussian:25", "motion:7"), peers=())
    assert [t["degradation"] for t in result["tables"]] == ["gaussian:25", "motion:7"]
    for table in result["tables"]:
        rows = {r["method"]: r for r in table["rows"]}
        assert list(rows) == ["input", "lnca"]
        reference = evaluate(model, photos, table["degradation"]).mean()
        assert rows["lnca"]["psnr"] == pytest.approx(reference["psnr"])
        assert rows["input"]["psnr"] == pytest.approx(reference["psnr_input"])
    assert result["protocol"]["ssim"]["window_size"] == 11


def test_quality_names_the_shipped_model_it_ran_so_a_table_is_traceable(photos):
    from lnca_cli.hub import load_model, load_registry

    model = load_model("deblur")  # by task: the registry's default for it
    result = bench.bench_quality(photos, {"deblur": model}, ("motion:7",), peers=(), limit=1)
    lnca_row = next(r for r in result["tables"][0]["rows"] if r["method"] == "lnca")
    assert lnca_row["settings"].startswith(f"model {load_registry().defaults['deblur']}, ")


def test_a_missing_peer_is_reported_not_fatal(photos):
    ghost = Peer("ghost", "noise", "no_such_module_for_lnca", "ghost-pkg", "-", lambda *a: None)
    broken = Peer("broken", "noise", "torch", "torch", "-", lambda image, sigma, kernel: 1 / 0)
    result = bench.bench_quality(photos, {"denoise": random_model()}, ("gaussian:15",), peers=(ghost, broken))
    rows = {r["method"]: r for r in result["tables"][0]["rows"]}
    assert rows["ghost"]["status"].startswith("not installed") and rows["ghost"]["psnr"] is None
    assert rows["broken"]["status"].startswith("failed: ZeroDivisionError") and rows["broken"]["psnr"] is None
    assert rows["lnca"]["status"] == "ok"


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
def test_each_installed_peer_restores_an_image_of_the_same_shape(peer):
    if not available(peer):
        pytest.skip(f"{peer.package} is not installed")
    clean = torch.rand(3, 24, 28, generator=torch.Generator().manual_seed(0))
    degraded, sigma, kernel = bench.degrade_image(clean, "gaussian:25" if peer.kind == "noise" else "motion:7", 0)
    for image in (degraded, degraded[:1]):  # colour and grayscale
        assert _peer_restore(peer, image, sigma, kernel).shape == image.shape


def test_degrade_image_gives_the_peers_the_true_sigma_and_kernel():
    clean = torch.rand(3, 16, 16)
    _, sigma, kernel = bench.degrade_image(clean, "gaussian:25", 0)
    assert sigma == pytest.approx(25 / 255) and kernel is None
    _, sigma, kernel = bench.degrade_image(clean, "motion:7", 0)
    assert sigma is None and kernel.shape == (7, 7) and kernel.sum() == pytest.approx(1)


def test_quality_cli_needs_trained_weights_and_says_so_in_one_line(photos, tmp_path):
    result = lnca("bench", "quality", "--data", photos, "--degradations", "gaussian:25", "--model",
                  tmp_path / "missing.safetensors")
    assert result.exit_code == 1 and "needs trained weights" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_quality_cli_json(photos, tiny_weights):
    result = lnca("bench", "quality", "--data", photos, "--model", tiny_weights, "--degradations", "gaussian:25",
                  "--peers", "skimage-tv", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["tables"][0]["rows"]
    assert [r["method"] for r in rows] == ["input", "lnca", "skimage-tv"]


def test_show_prints_a_saved_result_as_markdown_without_measuring(photos, tiny_weights, tmp_path):
    saved = tmp_path / "q.json"
    assert lnca("bench", "quality", "--data", photos, "--model", tiny_weights, "--degradations", "gaussian:25",
                "--peers", "skimage-tv", "--out", saved).exit_code == 0
    rows = json.loads(saved.read_text())["tables"][0]["rows"]
    result = lnca("bench", "show", saved, "--markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("**gaussian:25: 2 images") and lines[2] == "| method | PSNR dB | SSIM | mottle | s/MP | status |"
    assert f"| lnca | {rows[1]['psnr']:.2f} | {rows[1]['ssim']:.4f} | {rows[1]['mottle']:.2f} |" in result.stdout
    assert "**Methods: settings and versions**" in result.stdout and "denoise_tv_chambolle" in result.stdout
    no_plot = lnca("bench", "show", saved, "--plot", tmp_path / "q.png")
    assert no_plot.exit_code == 2 and "has tables only" in no_plot.stderr and not (tmp_path / "q.png").exists()


@pytest.mark.parametrize("content, message", [("{not json", "not a JSON file"),
                                              ('{"models": {}}', "not a result written by lnca bench")])
def test_show_refuses_what_is_not_a_result_in_one_line(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    result = lnca("bench", "show", path)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_peer_is_a_usage_error(photos, tiny_weights):
    result = lnca("bench", "quality", "--data", photos, "--model", tiny_weights, "--peers", "gimp")
    assert result.exit_code == 2 and "unknown peer gimp" in result.stderr


def test_steps_rows_and_plot(photos, tiny_weights, tmp_path):
    result = lnca("bench", "steps", "--data", photos, "--model", tiny_weights, "--step-counts", "1,3", "--json",
                  "--plot", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert [r["steps"] for r in printed["rows"]] == [1, 3]
    assert all(r["seconds_per_mp"] > 0 and r["psnr"] > 0 for r in printed["rows"])
    assert (tmp_path / "s.png").stat().st_size > 0


def test_speed_runs_lnca_denoise_in_a_fresh_process(tiny_weights):
    result = bench.bench_speed((0.005,), model=tiny_weights, steps=2, threads=1)
    row = result["rows"][0]
    assert (row["method"], row["device"], row["precision"]) == ("lnca denoise", "cpu", "fp32")
    assert [r["precision"] for r in result["rows"]] == ["fp32"] + (["bf16"] if devices.cpu_has_bf16() else [])
    assert row["width"] * row["height"] == pytest.approx(5000, rel=0.05)
    assert row["seconds_per_mp"] == pytest.approx(row["seconds"] / row["megapixels"])
    assert row["peak_rss_mib"] >= row["baseline_rss_mib"] > 0


def test_speed_times_the_previous_rule_and_opencv_on_the_same_photograph(tiny_weights):
    result = bench.bench_speed((0.005,), model=tiny_weights, steps=2, threads=1)
    (side,) = result["side_by_side"]
    assert side["width"] == result["rows"][0]["width"]
    for key in ("fast_fp32", "fast_default", "previous_fp32"):
        assert side[f"{key}_seconds"] > 0 and side[f"{key}_gflops"] > 0
    assert side["new_over_old"] == pytest.approx(side["fast_fp32_seconds"] / side["previous_fp32_seconds"])
    if side.get("opencv_seconds") is not None:
        assert side["lnca_over_opencv"] == pytest.approx(side["fast_default_seconds"] / side["opencv_seconds"])
    tables = tables_of(result)
    assert [t.title.split(",")[0] for t in tables] == ["lnca denoise", "The restore alone"]


def test_train_benchmark_times_both_rules_for_both_phases():
    result = bench.bench_train(bench.TrainSettings(batch=2, crop=16, steps=2, repeats=1, warmup=0))
    assert [r["mode"] for r in result["rows"]] == ["nca", "e2e"]
    for r in result["rows"]:
        assert r["fast_per_s"] > 0 and r["previous_per_s"] > 0
        assert r["speedup"] == pytest.approx(r["previous_ms"] / r["fast_ms"])
    assert tables_of(result)[0].row_count == 2
    with pytest.raises(ValueError, match="crop"):
        bench.bench_train(bench.TrainSettings(crop=10))


def test_make_photo_has_the_asked_size_and_the_source_aspect(tmp_path):
    source = tmp_path / "src.png"
    write_photo(source, size=(30, 20))
    width, height = bench.make_photo(tmp_path / "big.jpg", 0.06, source)
    assert width / height == pytest.approx(1.5, rel=0.02) and width * height == pytest.approx(60_000, rel=0.02)


def test_speed_summary_fits_seconds_per_megapixel():
    rows = [{"device": "cpu", "precision": "fp32", "megapixels": mp, "seconds": 1 + 2 * mp, "peak_rss_mib": 500.0,
             "gpu_peak_mib": None} for mp in (1, 12, 50)]
    (summary,) = _speed_summary(rows)
    assert summary["fitted_seconds_per_mp"] == pytest.approx(2) and summary["memory_growth"] == 1


@pytest.mark.slow
def test_all_in_one_run(photos, tiny_weights, tmp_path):
    result = lnca("bench", "all", "--data", photos, "--model", tiny_weights, "--sizes", "32,64", "--train-sizes",
                  "16,32", "--steps", "2", "--repeats", "1", "--budget-mib", "24", "--no-isolate", "--megapixels",
                  "0.005", "--degradations", "gaussian:25", "--step-counts", "1,2", "--out", tmp_path / "all.json",
                  "--plot", tmp_path / "all.png")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "all.json").read_text())
    assert {"machine", "nca", "speed", "quality", "steps"} <= set(written)
    assert all(written[part]["seconds"] > 0 for part in ("nca", "speed", "quality", "steps"))


def test_the_command_line_defaults_are_the_benchmarks_defaults():
    from lnca_cli.cli import bench as cli

    def numbers(text, kind=int):
        return tuple(kind(part) for part in text.split(","))

    defaults = bench.NCASettings()
    assert (numbers(cli.NCA_SIZES), numbers(cli.NCA_TRAIN_SIZES)) == (defaults.sizes, defaults.train_sizes)
    assert (cli.NCA_BUDGET_MIB, cli.NCA_REPEATS) == (defaults.budget_mib, defaults.repeats)
    assert numbers(cli.SPEED_MEGAPIXELS, float) == bench.SPEED_MEGAPIXELS
    assert tuple(cli.QUALITY_DEGRADATIONS.split(",")) == bench.QUALITY_DEGRADATIONS
    assert numbers(cli.STEP_COUNTS) == bench.STEP_COUNTS
    ray = bench.RayBenchSettings()
    assert (cli.RAY_IMAGES, cli.RAY_MEGAPIXELS, numbers(cli.RAY_WORKERS)) == (ray.images, ray.megapixels, ray.workers)


def test_the_restore_path_never_imports_bench():
    import subprocess
    import sys

    code = "import sys, lnca_cli.cli; print(any(m in sys.modules for m in ('lnca_cli.bench', 'lnca_cli.bench.peers')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_bench_all_refuses_bad_settings_of_any_part_before_measuring(photos):
    result = lnca("bench", "all", "--data", photos, "--megapixels", "0", "--sizes", "32,64")
    assert result.exit_code == 2 and "positive megapixel" in result.stderr
    result = lnca("bench", "all", "--data", photos, "--step-counts", "0,4")
    assert result.exit_code == 2 and "step counts" in result.stderr


def test_backend_variants_start_with_torch_fp32_and_skip_what_is_not_installed(monkeypatch):
    import lnca_cli.bench.speed as speed

    monkeypatch.setattr(speed, "installed", lambda: {"torch": "2", "onnxruntime": None, "openvino": None})
    assert bench.backend_variants("all")[0] == ("torch", "fp32")
    assert {name for name, _ in bench.backend_variants("all")} == {"torch"}
    with pytest.raises(SettingsError, match="not installed"):
        bench.backend_variants("torch,openvino")
    with pytest.raises(SettingsError, match="--backend takes all"):
        bench.backend_variants("tensorrt")


def test_speed_times_a_graph_back_end_beside_torch_and_compares_its_psnr(tiny_weights, tmp_path):
    pytest.importorskip("onnxruntime", reason='onnxruntime is not installed: pip install "lnca[onnx]"')
    from lnca_cli.bench.speed import _backends_side_by_side
    from lnca_cli.cli.bench_report import backends_table

    photo = tmp_path / "p.jpg"
    size = bench.make_photo(photo, 0.005)
    rows = _backends_side_by_side([(photo, size)], tiny_weights, 2, 1, [("torch", "fp32"), ("onnxruntime", "fp32")],
                                  1, lambda message: None)
    assert [(r["backend"], r["precision"]) for r in rows] == [("torch", "fp32"), ("onnxruntime", "fp32")]
    assert rows[0]["speedup"] == 1 and rows[0]["psnr_change"] == 0
    assert abs(rows[1]["psnr_change"]) < 0.05 and rows[1]["seconds_per_mp"] > 0 and rows[1]["open_seconds"] > 0
    table = backends_table({"settings": {"backend_noise": "gaussian:25", "repeats": 1}, "backends": rows})
    assert table.row_count == 2


@pytest.mark.slow
def test_speed_with_every_back_end_in_one_run(tiny_weights, tmp_path):
    result = lnca("bench", "speed", "--megapixels", "0.005", "--model", tiny_weights, "--steps", "2", "--threads", "1",
                  "--backend", "all", "--out", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "s.json").read_text())
    assert {r["backend"] for r in written["backends"]} == {n for n, v in written["machine"]["backends"].items() if v}
