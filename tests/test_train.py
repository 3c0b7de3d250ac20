"""Training: losses, the pool, resumable checkpoints, the export, and `lnca train` end to end."""
import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import write_photo
from lnca_cli.cli import app
from lnca_cli.devices import DeviceError, cpu_has_bf16
from lnca_cli.errors import SettingsError
from lnca_cli.hub import load_weights
from lnca_cli.recipe import TrainConfig
from lnca_cli.train import (Trainer, cosine_lr, degrade_for_task, degraded_crops, fewest_good_steps,
                            normalize_gradients, pixel_loss, random_crops, split_photos, training_precision)

TINY_RUN = dict(preset="paper", crop=16, batch=2, ae_iterations=3, nca_iterations=3, pool_size=6, val_every=2,
                min_steps=2, max_steps=4, val_crop=16)


def photos(n=4, size=40):
    return [(torch.rand(3, size, size + 8, generator=torch.Generator().manual_seed(i)) * 255).to(torch.uint8)
            for i in range(n)]


def make_trainer(**overrides) -> Trainer:
    torch.manual_seed(0)
    return Trainer(TrainConfig(**{**TINY_RUN, **overrides}), photos(), photos(2))


def test_cosine_schedule_reaches_zero_only_at_the_end():
    assert cosine_lr(1e-2, 0, 100) == pytest.approx(1e-2)
    assert cosine_lr(1e-2, 50, 100) == pytest.approx(5e-3)
    assert cosine_lr(1e-2, 100, 100) == pytest.approx(0)


def test_gradients_are_normalised_per_tensor():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))
    a.grad, b.grad = torch.full((3,), 5.0), torch.full((2, 2), 0.1)
    normalize_gradients([a, b])
    assert float(a.grad.norm()) == pytest.approx(1) and float(b.grad.norm()) == pytest.approx(1)


def test_crops_are_native_resolution_and_seeded():
    crops = random_crops(photos(), 5, 16, torch.Generator().manual_seed(1))
    assert crops.shape == (5, 3, 16, 16) and 0 <= float(crops.min()) and float(crops.max()) <= 1
    again = random_crops(photos(), 5, 16, torch.Generator().manual_seed(1))
    assert torch.equal(crops, again)


@pytest.mark.parametrize("task", ["denoise", "deblur", "denoise-masked"])
def test_each_task_degrades(task):
    clean = torch.rand(2, 3, 16, 16)
    degraded, mask = degrade_for_task(task, clean, torch.Generator().manual_seed(0))
    assert degraded.shape == clean.shape and mask.shape == (2, 1, 16, 16)
    assert not torch.equal(degraded, clean)
    with pytest.raises(SettingsError, match="unknown task"):
        degrade_for_task("sharpen", clean, torch.Generator())


def test_degrading_before_the_crop_lets_a_blur_read_the_photo_around_it():
    photo = torch.ones(1, 3, 40, 40)
    photo[..., 10:30, 10:30] = 0.0  # a dark square in a bright photo: the crop is the square
    for seed in range(8):  # motion blurs at any angle, and defocus
        clean, degraded, mask = degraded_crops("deblur", photo, 10, torch.Generator().manual_seed(seed))
        assert clean.shape == degraded.shape == (1, 3, 20, 20) and mask.shape == (1, 1, 20, 20)
        assert clean.sum() == 0 and degraded.amax() > 0.2  # the light around the crop is blurred into it
        alone, _ = degrade_for_task("deblur", clean, torch.Generator().manual_seed(seed))
        assert alone.amax() < 0.05  # blurred alone, the crop reads only its reflection (and a little noise)


def test_a_trainer_that_degrades_before_the_crop_gives_crops_of_the_recipes_size():
    trainer = make_trainer(task="deblur", degrade_before_crop=True, crop=8, val_crop=12)
    clean, degraded, _ = trainer._batch()
    assert clean.shape == degraded.shape == (2, 3, 8, 8)
    assert trainer.val_clean.shape[-2:] == trainer.val_degraded.shape[-2:] == (12, 12)
    assert make_trainer(task="denoise", degrade_before_crop=True).val_clean.shape[-2:] == (16, 16)  # noise: no reach


def test_validation_split_is_fixed_and_disjoint():
    files = [f"{i}.png" for i in range(40)]
    train, val = split_photos(files, 0.1, seed=3)
    assert len(val) == 4 and not set(train) & set(val)
    assert split_photos(files, 0.1, seed=3) == (train, val)


def test_phase_two_leaves_the_autoencoder_frozen_and_fills_the_pool():
    trainer = make_trainer()
    trainer.run(lambda: trainer.phase == 2 and trainer.iteration == 1)
    assert trainer.phase == 2
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.startswith("nca.")}
    trainer.nca_iteration()
    after = trainer.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert trainer.pool.cells.shape[0] == TINY_RUN["pool_size"]


def test_resumed_run_equals_an_uninterrupted_run(tmp_path):
    whole = make_trainer()
    assert whole.run()
    halted = make_trainer()
    assert not halted.run(lambda: halted.phase == 2 and halted.iteration == 2)  # mid-phase 2, pool filled
    halted.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = make_trainer(seed=99)  # a different start: everything must come from the checkpoint
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.run()
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert whole.best_psnr == resumed.best_psnr


def test_export_keeps_the_best_weights_and_the_recipe(tmp_path):
    trainer = make_trainer()
    trainer.run()
    trainer.export(tmp_path / "m.safetensors", {"note": "test"})
    model, metadata = load_weights(tmp_path / "m.safetensors")
    assert metadata["task"] == "denoise" and metadata["note"] == "test"
    assert json.loads(metadata["train_config"])["crop"] == 16
    scores = json.loads(metadata["val_psnr_by_steps"])
    chosen = scores[str(model.config.steps)]  # default steps chosen on validation: the fewest within 0.05 dB
    assert chosen >= max(scores.values()) - 0.05
    assert all(score < max(scores.values()) - 0.05 for t, score in scores.items() if int(t) < model.config.steps)
    best = trainer.best_model()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in best.state_dict().items())


def test_lnca_train_end_to_end_with_resume(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(5):
        write_photo(data / f"p{i}.png", size=(40, 36), seed=i)
    out, ckpt, log, plot = (tmp_path / n for n in ("m.safetensors", "c.pt", "log.jsonl", "loss.png"))
    args = ["train", "--data", str(data), "--out", str(out), "--preset", "paper", "--crop", "16", "--batch", "2",
            "--ae-iterations", "2", "--nca-iterations", "2", "--checkpoint", str(ckpt), "--log", str(log),
            "--plot", str(plot), "--device", "cpu"]
    runner = CliRunner()
    stopped = runner.invoke(app, args + ["--minutes", "0"])
    assert stopped.exit_code == 0, stopped.output
    assert ckpt.exists() and not out.exists() and "resume" in stopped.stderr
    finished = runner.invoke(app, args)
    assert finished.exit_code == 0, finished.output
    assert "filling the pool with" in finished.stderr  # phase 2's first batch waits for it: say so
    model, metadata = load_weights(out)
    assert metadata["task"] == "denoise" and plot.stat().st_size > 0
    assert len(log.read_text().splitlines()) == 4


@pytest.mark.parametrize("args,message", [
    (["--task", "sharpen"], "unknown task"),
    (["--preset", "huge"], "unknown preset"),
    (["--minutes", "5"], "needs a --checkpoint"),
    (["--precision", "fp16"], "unknown training precision 'fp16'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_lnca_train_bad_settings(tmp_path, args, message):
    write_photo(tmp_path / "a.png", size=(40, 40))
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.safetensors")]
                                + args)
    assert result.exit_code == 2 and message in result.stderr


def test_lnca_train_on_another_models_autoencoder_skips_phase_1(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(4):
        write_photo(data / f"p{i}.png", size=(40, 36), seed=i)
    phase_1_only = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "ae.safetensors"),
                                            "--preset", "paper", "--crop", "16", "--batch", "2", "--ae-iterations",
                                            "2", "--nca-iterations", "0", "--device", "cpu"])
    assert phase_1_only.exit_code == 0 and "no NCA training" in phase_1_only.stdout
    source = make_trainer()
    source.run()
    source.export(tmp_path / "source.safetensors", {})
    out, log = tmp_path / "m.safetensors", tmp_path / "log.jsonl"
    args = ["train", "--data", str(data), "--out", str(out), "--preset", "paper", "--crop", "16", "--batch", "2",
            "--ae-iterations", "5", "--nca-iterations", "2", "--log", str(log), "--device", "cpu",
            "--autoencoder", str(tmp_path / "source.safetensors")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {json.loads(line)["phase"] for line in log.read_text().splitlines()} == {2}
    model, _ = load_weights(out)
    reference, _ = load_weights(tmp_path / "source.safetensors")
    for part in ("encoder", "decoder"):
        ours, theirs = getattr(model, part).state_dict(), getattr(reference, part).state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in ours.items())

    wider = CliRunner().invoke(app, args[:-2] + ["--preset", "wide", "--autoencoder", str(tmp_path / "source.safetensors")])
    assert wider.exit_code == 2 and "does not fit preset 'wide'" in wider.stderr


def test_fewest_steps_within_a_twentieth_of_a_db_of_the_best():
    assert fewest_good_steps({16: 28.53, 24: 28.538, 32: 28.5381, 64: 28.5375}) == 16
    assert fewest_good_steps({8: 27.0, 16: 28.0, 32: 28.04}) == 16
    assert fewest_good_steps({8: 27.0, 16: 28.0, 32: 28.2}) == 32


def test_phase_3_trains_every_part_and_keeps_batchnorm_statistics():
    trainer = make_trainer(ae_iterations=0, nca_iterations=0, e2e_iterations=3, e2e_lr=1e-2)
    trainer.phase = 3
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.run()
    after = trainer.model.state_dict()
    for part in ("encoder.skip.0.weight", "nca.rule.expand.weight", "decoder.out.0.weight"):
        assert not torch.equal(before[part], after[part]), part
    for key in (k for k in before if "running_" in k):
        assert torch.equal(before[key], after[key]), key
    assert trainer.best_state and trainer.pool is None


def test_training_is_fp32_on_a_cpu_unless_bf16_is_asked_for():
    cpu = torch.device("cpu")
    assert training_precision(cpu) == "fp32" and training_precision(cpu, "fp32") == "fp32"
    with pytest.raises(DeviceError, match="unknown training precision 'fp16'"):
        training_precision(cpu, "fp16")


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 arithmetic")
def test_phase_3_in_bf16_computes_in_bf16_and_keeps_fp32_weights():
    def trained_weights(precision):
        torch.manual_seed(0)
        trainer = Trainer(TrainConfig(**{**TINY_RUN, "ae_iterations": 0, "nca_iterations": 0, "e2e_iterations": 2}),
                          photos(), photos(2), precision=precision)
        trainer.phase = 3
        seen = []
        trainer.model.decoder.out[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
        assert trainer.run()
        return trainer.model.state_dict()["nca.rule.expand.weight"], set(seen)

    fp32, fp32_dtypes = trained_weights("fp32")
    bf16, bf16_dtypes = trained_weights("bf16")
    assert fp32_dtypes == {torch.float32} and torch.bfloat16 in bf16_dtypes
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0)  # the same training, to bf16's precision
    assert not torch.equal(bf16, fp32)


@pytest.mark.parametrize("kind", ["mse", "l1", "charbonnier", "l1-gradient"])
def test_pixel_losses_are_zero_only_for_a_perfect_restore(kind):
    clean = torch.rand(2, 3, 8, 8)
    assert float(pixel_loss(kind, clean, clean)) < 2e-3
    assert float(pixel_loss(kind, clean.flip(-1), clean)) > 0.05
    with pytest.raises(ValueError, match="unknown loss"):
        pixel_loss("ssim", clean, clean)


def test_the_gradient_loss_adds_the_error_of_the_edges_to_l1():
    clean = torch.zeros(1, 1, 8, 8)
    clean[..., 4:] = 1.0  # a sharp vertical edge
    soft = clean.clone()
    soft[..., 3], soft[..., 4] = 0.25, 0.75  # the same edge, blurred over two columns: mean kept
    sharp_but_shifted = clean.roll(1, dims=-1)
    for restored in (soft, sharp_but_shifted):
        assert pixel_loss("l1-gradient", restored, clean) > pixel_loss("l1", restored, clean)
    # across each row the soft edge's steps err by 0.25, 0.5 and 0.25 (1.0 in all) of 7 differences;
    # down the columns nothing changes
    edges = pixel_loss("l1-gradient", soft, clean) - pixel_loss("l1", soft, clean)
    assert float(edges) == pytest.approx(1.0 / 7, abs=1e-6)


def test_phase_3_resumes_exactly_from_a_small_checkpoint(tmp_path):
    def phase_3_trainer():
        trainer = make_trainer(ae_iterations=0, nca_iterations=0, e2e_iterations=4)
        trainer.phase = 3
        return trainer

    whole = phase_3_trainer()
    whole.run()
    first = phase_3_trainer()
    calls = iter(range(100))
    assert not first.run(lambda: next(calls) >= 2)
    first.save_checkpoint(tmp_path / "c.pt")
    assert not torch.load(tmp_path / "c.pt", weights_only=True)["pool"]  # no pool in phase 3
    resumed = phase_3_trainer()
    resumed.load_checkpoint(tmp_path / "c.pt")
    assert resumed.run()
    for key, value in whole.model.state_dict().items():
        assert torch.allclose(value, resumed.model.state_dict()[key], atol=1e-6), key


def test_lnca_train_init_trains_a_model_on_end_to_end(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(4):
        write_photo(data / f"p{i}.png", size=(40, 36), seed=i)
    source = make_trainer()
    source.run()
    source.export(tmp_path / "source.safetensors", {})
    out, log = tmp_path / "m.safetensors", tmp_path / "log.jsonl"
    common = ["train", "--data", str(data), "--out", str(out), "--preset", "paper", "--crop", "16", "--batch", "2",
              "--device", "cpu", "--init", str(tmp_path / "source.safetensors")]
    result = CliRunner().invoke(app, common + ["--e2e-iterations", "2", "--val-every", "1", "--min-steps", "2",
                                               "--max-steps", "3", "--log", str(log), "--degrade-before-crop"])
    assert result.exit_code == 0, result.output
    assert {json.loads(line)["phase"] for line in log.read_text().splitlines()} == {3}
    _, metadata = load_weights(out)
    assert metadata["init"] == str(tmp_path / "source.safetensors")
    assert json.loads(metadata["train_config"])["degrade_before_crop"] is True  # (noise reaches no neighbours)
    no_budget = CliRunner().invoke(app, common)
    assert no_budget.exit_code == 2 and "--e2e-iterations" in no_budget.stderr


def test_phase_3_with_a_frozen_autoencoder_trains_the_nca_alone():
    trainer = make_trainer(ae_iterations=0, nca_iterations=0, e2e_iterations=3, e2e_lr=1e-2, freeze_autoencoder=True)
    trainer.phase = 3
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.run()
    after = trainer.model.state_dict()
    assert not torch.equal(before["nca.rule.expand.weight"], after["nca.rule.expand.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("encoder.", "decoder.")))


def test_a_residual_model_from_init_starts_as_the_identity_and_learns_a_correction(tmp_path):
    source = make_trainer()
    source.run()
    residual = make_trainer(ae_iterations=0, nca_iterations=0, e2e_iterations=3, e2e_lr=1e-2, residual=True)
    residual.adopt_model(source.best_model())
    image = torch.rand(1, 3, 16, 20)
    assert torch.equal(residual.model.eval()(image, steps=2), image)  # doing nothing is where it starts
    assert residual.run()
    trained = residual.best_model()
    assert trained.config.residual and not torch.equal(trained(image, steps=2), image)
    with pytest.raises(ValueError, match="give --residual"):
        make_trainer().adopt_model(trained)
    residual.save_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="residual output"):
        make_trainer(ae_iterations=0, nca_iterations=0, e2e_iterations=3).load_checkpoint(tmp_path / "c.pt")


def test_init_from_a_narrower_rule_grows_it_and_trains_the_wider_one_on():
    from lnca_cli.model import LNCA, PRESETS

    torch.manual_seed(1)
    narrow = LNCA(PRESETS["wide-dw"]).eval()
    wide = make_trainer(preset="wide-dw-256", ae_iterations=0, nca_iterations=0, e2e_iterations=2, e2e_lr=1e-3)
    wide.adopt_model(narrow)
    image = torch.rand(1, 3, 16, 20)
    assert wide.phase == 3 and wide.model.config.embed_dim == 256
    torch.testing.assert_close(wide.model.eval()(image, steps=2), narrow(image, steps=2))
    assert wide.run()
    with pytest.raises(ValueError, match="does not fit preset 'wide-dw'"):
        make_trainer(preset="wide-dw").adopt_model(wide.best_model())  # no shrinking
    deep = make_trainer(preset="wide-dw-deep", ae_iterations=0, nca_iterations=0, e2e_iterations=2)
    deep.adopt_model(narrow)
    torch.testing.assert_close(deep.model.eval()(image, steps=2), narrow(image, steps=2))


def test_lnca_train_residual_needs_init(tmp_path):
    (tmp_path / "photos").mkdir()
    write_photo(tmp_path / "photos" / "a.png", size=(40, 40))
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "m.safetensors"),
                                      "--e2e-iterations", "2", "--residual"])
    assert result.exit_code == 2 and "--residual starts from a trained model" in result.stderr


def test_a_resumed_runs_log_keeps_the_later_row_of_a_batch_done_twice(tmp_path):
    from lnca_cli.train import read_log

    log = tmp_path / "log.jsonl"
    rows = [{"phase": 3, "iteration": i, "loss": 1.0} for i in (1, 2, 3)]  # killed after 3; checkpoint at 2
    rows += [{"phase": 3, "iteration": i, "loss": 0.5} for i in (3, 4)]  # the resume does 3 again
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert [(r["iteration"], r["loss"]) for r in read_log(log)] == [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.5)]
