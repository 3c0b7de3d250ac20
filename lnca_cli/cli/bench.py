"""`lnca bench`: the benchmarks' options and output; lnca_cli.bench measures."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from lnca_cli.cli._options import (EVAL_DEFAULTS, DataOption, DegradeSeedOption, DeviceOption, LimitOption,
                                   ModelOption, RayAddressOption, StepsOption, TaskOption, ThreadsOption, err, fail,
                                   friendly, use_threads)
from lnca_cli.tasks import get_task

app = typer.Typer(help="Benchmarks: latent vs pixel NCA, the tool's speed and memory, quality against other "
                  "tools, steps vs quality, the Ray engine. See docs/BENCHMARKS.md.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})

# The benchmarks' defaults as the options show them (lnca_cli.bench is imported only when a bench command runs;
# tests/test_bench.py checks that these agree with its constants).
NCA_SIZES, NCA_TRAIN_SIZES, NCA_BUDGET_MIB, NCA_REPEATS = "32,64,128,256", "32,64,128", 2048.0, 3
SPEED_MEGAPIXELS = "1,12,50"
QUALITY_DEGRADATIONS = "gaussian:15,gaussian:25,gaussian:50,masked:0.5,motion:7,motion:15"
STEP_COUNTS = "8,16,32,64,128"
RAY_IMAGES, RAY_MEGAPIXELS, RAY_WORKERS = 24, 0.25, "1,2"

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
OutOption = Annotated[Optional[str], typer.Option("--out", help="Also write the JSON to this file.")]
PlotOption = Annotated[Optional[str], typer.Option("--plot", help="Draw the results to this PNG.")]
EVERY_TASK = "each task's model; one given serves every task"


def _numbers(text: str, option: str, kind: type = int) -> tuple:
    """"32,64,128" -> (32, 64, 128); a bad list is a usage error naming the option."""
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"{option} takes numbers separated by commas, got '{text}'")


def _bench_setup(threads: int | None):
    """Import the benchmarks (torch and friends) only when a bench command runs."""
    from lnca_cli import bench

    bench.set_threads(use_threads(threads))
    return bench


def _bench_note(message: str) -> None:
    err.print(message, style="dim")


def _bench_output(result: dict, as_json: bool, out: str | None, plot: str | None, markdown: bool = False) -> None:
    """Tables (or --json, or Markdown) on stdout, the JSON to --out, the plot to --plot."""
    from lnca_cli.cli.bench_report import markdown_of, plot_of, tables_of

    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    if plot:
        image = plot_of(result)
        if image is None:
            fail(f"--plot: the {result['benchmark']} benchmark has tables only")
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        image.save(plot)
    if as_json:
        print(json.dumps(result))
    elif markdown:
        print(markdown_of(tables_of(result)), end="")
    else:
        console = Console(highlight=False)
        for table in tables_of(result):
            console.print(table)


def _trained(bench, model: str | None, tasks, offline: bool = False) -> dict:
    """Each task's model, loaded before any measuring; untrained ones are announced."""
    models = {task: bench.load_trained(model, task, offline) for task in dict.fromkeys(tasks)}
    for loaded in models.values():
        if "train_config" not in loaded.info:
            err.print(f"warning: model '{loaded.info['name']}' has no training record: its scores mean nothing")
    return models


@app.command("nca")
@friendly
def bench_nca(
    sizes: Annotated[str, typer.Option(help="Square input sides for inference (512 adds about 6 min on "
                                       "2 CPU cores).")] = NCA_SIZES,
    train_sizes: Annotated[str, typer.Option(help="Square input sides for one training step.")] = NCA_TRAIN_SIZES,
    steps: Annotated[Optional[int], typer.Option(help="Inference steps. Default: the model's (64).")] = None,
    train_steps: Annotated[int, typer.Option(help="Steps of the training step.")] = 32,
    batch: Annotated[int, typer.Option(help="Images per batch.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timed runs per model (the median is reported).")] = NCA_REPEATS,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 1,
    budget_mib: Annotated[float, typer.Option(help="Memory budget for the largest input.")] = NCA_BUDGET_MIB,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    isolate: Annotated[bool, typer.Option(help="Measure CPU memory in a fresh process per measurement "
                                          "(exact); --no-isolate: in this one (quicker, for tests).")] = True,
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """Latent NCA vs pixel NCA (same rule, steps, update rate, batch): memory, latency, largest input."""
    bench = _bench_setup(threads)
    settings = bench.NCASettings(
        sizes=_numbers(sizes, "--sizes"), train_sizes=_numbers(train_sizes, "--train-sizes"), steps=steps,
        train_steps=train_steps, batch=batch, repeats=repeats, warmup=warmup, budget_mib=budget_mib, device=device,
        isolate=isolate)
    _bench_output(bench.bench_nca(settings, _bench_note), as_json, out, plot)


@app.command("speed")
@friendly
def bench_speed(
    megapixels: Annotated[str, typer.Option(help="Photograph sizes in megapixels.")] = SPEED_MEGAPIXELS,
    model: ModelOption("the denoise model, else a random one (timing only)") = None,
    steps: StepsOption = None,
    devices: Annotated[str, typer.Option(help="auto (the CPU, and CUDA fp32 and fp16 when present) or a list: "
                                         "cpu,cuda.")] = "auto",
    threads: ThreadsOption = None,
    repeats: Annotated[int, typer.Option(help="Runs per size (the median is reported).")] = 1,
    image: Annotated[Optional[str], typer.Option(help="The photograph to resize to each size. Default: a smooth "
                                                 "random picture.")] = None,
    backend: Annotated[str, typer.Option(help="torch; or all, or a list such as torch,openvino: also the restore "
                                         "alone through each back end (fp32, and bf16 where the CPU has it), "
                                         "s/MP and PSNR against torch fp32.")] = "torch",
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """The whole `lnca denoise` on 1, 12 and 50 MP photographs: seconds per megapixel and peak memory."""
    bench = _bench_setup(threads)
    result = bench.bench_speed(_numbers(megapixels, "--megapixels", float), model, steps,
                               devices, threads, repeats, image, _bench_note, backends=backend)
    _bench_output(result, as_json, out, plot)


@app.command("train")
@friendly
def bench_train(
    batch: Annotated[int, typer.Option(help="Crops per batch.")] = 8,
    crop: Annotated[int, typer.Option(help="Crop side in pixels.")] = 64,
    steps: Annotated[int, typer.Option(help="NCA steps per iteration.")] = 16,
    repeats: Annotated[int, typer.Option(help="Timed iterations of each (the median is reported).")] = 5,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    as_json: JsonOption = False, out: OutOption = None,
) -> None:
    """Training iterations per second, phase 2 (NCA) and phase 3 (end to end): the fast rule against the previous one."""
    bench = _bench_setup(threads)
    settings = bench.TrainSettings(batch=batch, crop=crop, steps=steps, repeats=repeats, device=device)
    _bench_output(bench.bench_train(settings, _bench_note), as_json, out, None)


@app.command("quality")
@friendly
def bench_quality(
    data: DataOption,
    degradations: Annotated[str, typer.Option(help="Comma-separated degradation specs.")] =
    QUALITY_DEGRADATIONS,
    model: ModelOption(EVERY_TASK) = None,
    peers: Annotated[Optional[str], typer.Option(help="Only these peers (comma-separated names). Default: all.")]
    = None,
    steps: StepsOption = None,
    ensembles: Annotated[str, typer.Option(help="lnca rows: comma-separated --ensemble counts (1, 2, 4, 8), one row "
                                           "each.")] = "1",
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    limit: LimitOption = None,
    seed: DegradeSeedOption = 0,
    as_json: JsonOption = False, out: OutOption = None,
) -> None:
    """PSNR, SSIM and seconds per megapixel of lnca and of OpenCV, BM3D and scikit-image, per degradation."""
    bench = _bench_setup(threads)
    specs = tuple(spec.strip() for spec in degradations.split(",") if spec.strip())
    chosen = bench.choose_peers(peers)
    tasks = [bench.task_of(spec) for spec in specs]
    models = _trained(bench, model, tasks)
    result = bench.bench_quality(data, models, specs, chosen, steps, device, limit, seed,
                                 _bench_note, _numbers(ensembles, "--ensembles"))
    _bench_output(result, as_json, out, None)


@app.command("steps")
@friendly
def bench_steps(
    data: DataOption,
    task: TaskOption = "denoise",
    degradation: Annotated[Optional[str], typer.Option(help="Default by task: " + EVAL_DEFAULTS)]
    = None,
    model: ModelOption() = None,
    step_counts: Annotated[str, typer.Option(help="Step counts to compare.")] = STEP_COUNTS,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    limit: LimitOption = None,
    seed: DegradeSeedOption = 0,
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """PSNR and time at 8 to 128 NCA steps, to choose --steps."""
    bench = _bench_setup(threads)
    loaded = _trained(bench, model, [task])[task]
    spec = degradation or get_task(task).eval_degradation
    result = bench.bench_steps(data, loaded, spec, _numbers(step_counts, "--step-counts"), device,
                                                  limit, seed, _bench_note)
    _bench_output(result, as_json, out, plot)


@app.command("ray")
@friendly
def bench_ray(
    images: Annotated[int, typer.Option(help="Photographs in the folder.")] = RAY_IMAGES,
    megapixels: Annotated[float, typer.Option(help="Size of each photograph.")] = RAY_MEGAPIXELS,
    workers: Annotated[str, typer.Option(help="Counts of Ray workers to time (a CPU thread each).")] = RAY_WORKERS,
    model: ModelOption("the denoise model, else a random one (timing only)") = None,
    steps: StepsOption = None,
    repeats: Annotated[int, typer.Option(help="Runs of each engine, interleaved (the median is reported).")] = 1,
    ray_address: RayAddressOption = None,
    as_json: JsonOption = False, out: OutOption = None,
) -> None:
    """Images per second on one folder: the local engine against Ray's with 1 and 2 workers, and Ray's costs."""
    from lnca_cli.distributed import import_ray

    import_ray()  # before anything is measured: without Ray, one line that says how to install it
    bench = _bench_setup(None)
    settings = bench.RayBenchSettings(images=images, megapixels=megapixels, workers=_numbers(workers, "--workers"),
                                      repeats=repeats, model=model, steps=steps, address=ray_address)
    _bench_output(bench.bench_ray(settings, _bench_note), as_json, out, None)


@app.command("all")
@friendly
def bench_all(
    data: DataOption,
    threads: ThreadsOption = None,
    device: DeviceOption = "cpu",
    limit: LimitOption = None,
    sizes: Annotated[str, typer.Option(help="nca: inference sides.")] = NCA_SIZES,
    train_sizes: Annotated[str, typer.Option(help="nca: training-step sides.")] = NCA_TRAIN_SIZES,
    budget_mib: Annotated[float, typer.Option(help="nca: memory budget for the largest input.")] = NCA_BUDGET_MIB,
    repeats: Annotated[int, typer.Option(help="nca: timed runs per model.")] = NCA_REPEATS,
    isolate: Annotated[bool, typer.Option(help="nca: CPU memory in a fresh process per measurement.")] = True,
    megapixels: Annotated[str, typer.Option(help="speed: photograph sizes in megapixels.")] = SPEED_MEGAPIXELS,
    devices: Annotated[str, typer.Option(help="speed: auto, or a list such as cpu,cuda.")] = "auto",
    degradations: Annotated[str, typer.Option(help="quality: degradation specs.")] =
    QUALITY_DEGRADATIONS,
    step_counts: Annotated[str, typer.Option(help="steps: step counts.")] = STEP_COUNTS,
    model: ModelOption(EVERY_TASK) = None,
    steps: Annotated[Optional[int], typer.Option(help="NCA steps for nca, speed and quality. Default: the "
                                                 "model's.")] = None,
    as_json: JsonOption = False, out: OutOption = None, plot: PlotOption = None,
) -> None:
    """Every benchmark in one run, as docs/BENCHMARKS.md shows them."""
    from lnca_cli.evaluate import image_files

    bench = _bench_setup(threads)
    specs = tuple(spec.strip() for spec in degradations.split(",") if spec.strip())
    tasks = [bench.task_of(spec) for spec in specs]
    models = _trained(bench, model, ["denoise", *tasks])  # before any measuring: fail fast
    settings = bench.NCASettings(sizes=_numbers(sizes, "--sizes"), train_sizes=_numbers(train_sizes, "--train-sizes"),
                                 steps=steps, repeats=repeats, budget_mib=budget_mib, device=device, isolate=isolate)
    settings.check()  # every part's settings before the first is measured: a bad one is no surprise an hour in
    sizes_mp, counts = _numbers(megapixels, "--megapixels", float), _numbers(step_counts, "--step-counts")
    bench.check_speed_settings(sizes_mp)
    bench.check_step_counts(counts)
    bench.speed_variants(devices)
    source = str(image_files(data)[0])  # speed resizes the first photograph
    result = bench.bench_all({
        "nca": lambda: bench.bench_nca(settings, _bench_note),
        "speed": lambda: bench.bench_speed(sizes_mp, model, steps, devices, threads, 1, source, _bench_note),
        "quality": lambda: bench.bench_quality(data, models, specs, bench.PEERS, steps, device, limit, 0,
                                               _bench_note),
        "steps": lambda: bench.bench_steps(data, models["denoise"], "gaussian:25", counts, device, limit, 0,
                                           _bench_note),
    }, device)
    _bench_output(result, as_json, out, plot)


@app.command("show")
@friendly
def bench_show(
    result_file: Annotated[Path, typer.Argument(help="A JSON file written by a bench command's --out.")],
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown tables, as in docs/BENCHMARKS.md.")] = False,
    plot: PlotOption = None,
) -> None:
    """Print a saved result's tables again, or as Markdown, or redraw its plot, without measuring anything."""
    from lnca_cli.cli.bench_report import TABLES

    try:
        result = json.loads(result_file.read_text())
    except OSError as exc:
        fail(f"{result_file}: cannot read ({exc.strerror})")
    except (ValueError, UnicodeDecodeError):
        fail(f"{result_file}: not a JSON file")
    if not isinstance(result, dict) or result.get("benchmark") not in (*TABLES, "all"):
        fail(f"{result_file}: not a result written by lnca bench --out")
    _bench_output(result, False, None, plot, markdown)
