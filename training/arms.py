"""The recipe comparison of issue 12: short `lnca train` runs ("arms") at equal CPU budgets, scored
on the training pool's own validation split (never a test set), one table at the end.

Each arm starts from the same shipped weights and trains end to end (phase 3) for as many batches
as fit its CPU budget: a calibration of 20 batches measures the arm's CPU seconds per batch first,
so an arm that is cheaper per batch (fewer steps, smaller crops) gets more of them. Every arm has its
own cosine schedule over its batches, so each ends annealed. CPU time is the process's own, so a
busy machine slows an arm down without changing its budget.

    python training/arms.py denoise [--budget-minutes 4] [--pool /work/data/pool/train]
    python training/arms.py deblur

Results go to training/arms/TASK-ARM.json (a finished arm is not run again) and the table to
training/arms/TASK.md; the weights of each arm to /work/data/arms (not kept in the repository).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "arms"
WEIGHTS = Path("/work/data/arms")
CALIBRATION_BATCHES = 20

#: The common recipe (that of training/run.sh); each arm changes one thing.
BASE = dict(preset="wide-dw", loss="mse", batch=8, crop=64, min_steps=8, max_steps=16, e2e_lr=1e-3)
ARMS = {
    "denoise": {
        "end-to-end (base)": {},
        "NCA only": {"freeze_autoencoder": True},
        "L1": {"loss": "l1"},
        "Charbonnier": {"loss": "charbonnier"},
        "T in [4, 12]": {"min_steps": 4, "max_steps": 12},
        "T in [8, 32]": {"max_steps": 32},
        "crop 128, batch 2": {"crop": 128, "batch": 2},
        "crop 32, batch 32": {"crop": 32, "batch": 32},
        "lr 3e-4": {"e2e_lr": 3e-4},
        "lr 3e-3": {"e2e_lr": 3e-3},
        "bf16": {"precision": "bf16"},
    },
    "deblur": {
        "end-to-end (base)": {},
        "residual output": {"residual": True},
        "residual, L1": {"residual": True, "loss": "l1"},
        "residual, L1 + gradients": {"residual": True, "loss": "l1-gradient"},
        "residual, L1, degraded before the crop": {"residual": True, "loss": "l1", "degrade_before_crop": True},
    },
}
#: Blurs the deblur arms are also scored on over the validation split's whole photos (lnca eval):
#: the arms' own validation crops differ where the arm changes how crops are degraded.
WHOLE_PHOTO_SPECS = {"deblur": ("motion:7", "motion:15")}
INIT = {"denoise": "weights/denoise.safetensors", "deblur": "weights/deblur.safetensors"}


def slug(arm: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in arm.lower()).split())


def recipe(task: str, arm: str) -> dict:
    """The arm's `lnca train` settings: TrainConfig's fields, and `precision` (the trainer's)."""
    return {**BASE, "precision": "fp32", **ARMS[task][arm]}


def cpu_seconds_per_batch(task: str, arm: str) -> float:
    """The arm's CPU seconds per phase-3 batch, measured in this process on synthetic photos (the
    cost depends on crop, batch and steps, not on what the photos show)."""
    import time

    import torch

    from lnca_cli.devices import set_threads
    from lnca_cli.hub import load_weights
    from lnca_cli.recipe import TrainConfig
    from lnca_cli.train import Trainer

    set_threads(1)
    settings = recipe(task, arm)
    precision = settings.pop("precision")
    config = TrainConfig(task=task, e2e_iterations=1000, **settings)
    photos = [(torch.rand(3, 256, 256) * 255).to(torch.uint8) for _ in range(4)]
    trainer = Trainer(config, photos, photos[:1], precision=precision)
    trainer.adopt_model(load_weights(INIT[task])[0])
    trainer.e2e_iteration()  # warm-up
    started = time.process_time()
    for _ in range(CALIBRATION_BATCHES):
        trainer.e2e_iteration()
    return (time.process_time() - started) / CALIBRATION_BATCHES


def train_command(task: str, arm: str, pool: str, batches: int, out: Path, log: Path) -> list[str]:
    flags = []
    for field, value in recipe(task, arm).items():
        option = "--" + field.replace("_", "-")
        flags += [option] if value is True else [option, str(value)]
    return ["lnca", "train", "--data", pool, "--task", task, "--init", INIT[task], *flags, "--threads", "1",
            "--device", "cpu", "--e2e-iterations", str(batches), "--val-every", str(batches), "--out", str(out),
            "--overwrite", "--log", str(log)]


def run_arm(task: str, arm: str, pool: str, budget_s: float) -> dict:
    """Train the arm for the batches its budget buys; its validation scores at each step count."""
    from lnca_cli.hub import read_metadata

    WEIGHTS.mkdir(parents=True, exist_ok=True)
    per_batch = cpu_seconds_per_batch(task, arm)
    batches = max(CALIBRATION_BATCHES, round(budget_s / per_batch))
    out, log = WEIGHTS / f"{task}-{slug(arm)}.safetensors", RESULTS / f"{task}-{slug(arm)}.jsonl"
    log.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(train_command(task, arm, pool, batches, out, log), check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    scores = {int(t): s for t, s in json.loads(read_metadata(out)["val_psnr_by_steps"]).items()}
    best_steps = max(scores, key=scores.get)
    return {"task": task, "arm": arm, "recipe": recipe(task, arm), "batches": batches,
            "cpu_s_per_batch": per_batch, "train_cpu_minutes": batches * per_batch / 60,
            "run_cpu_minutes": total / 60, "val_psnr_by_steps": scores, "best_steps": best_steps,
            "best_psnr": scores[best_steps], "whole_photo_psnr": whole_photo_scores(task, out, pool)}


def validation_files(pool: str) -> list[Path]:
    """The pool's validation split, as every `lnca train` of the arms holds it out."""
    from lnca_cli.recipe import TrainConfig
    from lnca_cli.train import list_images, split_photos

    config = TrainConfig()
    return split_photos(list_images(pool), config.val_fraction, config.seed)[1]


def validation_folder(pool: str) -> Path:
    """The pool's validation split as a folder of links to its photos, for lnca eval."""
    folder = WEIGHTS / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    for path in validation_files(pool):
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return folder


def whole_photo_scores(task: str, weights: Path, pool: str) -> dict[str, list[float]]:
    """[PSNR of the degraded input, of the weights' restore] on the validation split's whole photos,
    per spec of WHOLE_PHOTO_SPECS."""
    scores, folder = {}, validation_folder(pool)
    for spec in WHOLE_PHOTO_SPECS.get(task, ()):
        report = subprocess.run(["lnca", "eval", "--task", task, "--data", str(folder),
                                 "--noise", spec, "-m", str(weights), "--threads", "1", "--device", "cpu", "--json"],
                                check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        mean = json.loads(report)["mean"]
        scores[spec] = [mean["psnr_input"], mean["psnr"]]
    return scores


def starting_point(task: str, pool: str) -> dict:
    """Validation PSNR of the degraded input and of the weights every arm starts from (at each step
    count), on the same validation crops the arms are scored on."""
    from lnca_cli.devices import set_threads
    from lnca_cli.hub import load_weights
    from lnca_cli.metrics import psnr, quantize8
    from lnca_cli.recipe import TrainConfig
    from lnca_cli.train import Trainer, load_photos

    set_threads(1)
    config = TrainConfig(task=task, e2e_iterations=1, **BASE)
    val_photos = load_photos(validation_files(pool), 16)
    trainer = Trainer(config, val_photos, val_photos)
    trainer.adopt_model(load_weights(INIT[task])[0])
    trainer.best_state = trainer.model.state_dict()
    _, scores = trainer.choose_steps()
    degraded = float(psnr(quantize8(trainer.val_degraded.clamp(0, 1)), trainer.val_clean).mean())
    return {"input_psnr": degraded, "init_psnr_by_steps": scores}


def table(rows: list[dict], start: dict) -> str:
    specs = WHOLE_PHOTO_SPECS.get(rows[0]["task"], ())
    whole = "".join(f" whole photos {spec} (input) |" for spec in specs)
    lines = ["| arm | batches | CPU s / batch | training CPU-min | val PSNR (best steps) | val PSNR at 12 steps |" + whole,
             "|---|---|---|---|---|---|" + "---|" * len(specs),
             f"| degraded input | - | - | - | {start['input_psnr']:.2f} | - |" + " - |" * len(specs)]
    init = {int(t): s for t, s in start["init_psnr_by_steps"].items()}
    best = max(init, key=init.get)
    lines.append(f"| start ({INIT[rows[0]['task']].split('/')[-1]}) | 0 | - | - | {init[best]:.2f} ({best}) | "
                 f"{init[12]:.2f} |" + " - |" * len(specs))
    for r in rows:
        at_12 = {int(t): v for t, v in r["val_psnr_by_steps"].items()}[12]
        scores = r.get("whole_photo_psnr", {})
        cells = "".join(f" {scores[spec][1]:.2f} ({scores[spec][0]:.2f}) |" if spec in scores else " - |"
                        for spec in specs)
        lines.append(f"| {r['arm']} | {r['batches']} | {r['cpu_s_per_batch']:.3f} | {r['train_cpu_minutes']:.1f} | "
                     f"{r['best_psnr']:.2f} ({r['best_steps']}) | {at_12:.2f} |" + cells)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=sorted(ARMS))
    parser.add_argument("--budget-minutes", type=float, default=4.0, help="training CPU-minutes per arm")
    parser.add_argument("--pool", default="/work/data/pool/train")
    parser.add_argument("--only", nargs="*", help="run these arms only (names as in ARMS)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for arm in args.only or ARMS[args.task]:
        path = RESULTS / f"{args.task}-{slug(arm)}.json"
        if not path.exists():
            print(f"{args.task}: {arm} ...", file=sys.stderr, flush=True)
            path.write_text(json.dumps(run_arm(args.task, arm, args.pool, 60 * args.budget_minutes), indent=1))
        rows.append(json.loads(path.read_text()))
        print(f"{args.task}: {arm}: {rows[-1]['best_psnr']:.2f} dB", file=sys.stderr, flush=True)
    start_path = RESULTS / f"{args.task}-start.json"
    if not start_path.exists():
        start_path.write_text(json.dumps(starting_point(args.task, args.pool), indent=1))
    start = json.loads(start_path.read_text())
    (RESULTS / f"{args.task}.md").write_text(table(rows, start) + "\n")
    print(table(rows, start))


if __name__ == "__main__":
    main()
