"""The whole tool: `lnca denoise` on 1, 12 and 50 megapixel photographs, each run in a fresh process
(seconds per megapixel, peak memory), and side by side on each photograph: the restore alone with
the fast rule and the previous one (previous_rule.py), and OpenCV's NL-means; with `backends`, the
restore alone through each back end (torch, onnxruntime, openvino; fp32 and bf16 where the CPU has
it) on the photograph with Gaussian noise, its seconds per megapixel and its PSNR against torch fp32's.

The *_here functions are what the worker processes run (__main__.py).
"""
from __future__ import annotations

import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lnca_cli.bench.harness import (LATENT_PRESET, MIB, Note, fit_line, machine_info, proc_status_kib, quiet, ratio_of,
                                    run_worker)
from lnca_cli.bench.peers import OPENCV_STRENGTH, PEERS, available
from lnca_cli.backends import BACKENDS, graph_precision, installed, open_backend
from lnca_cli.degrade import parse_degradation
from lnca_cli.devices import cpu_has_bf16, resolve_device, resolve_precision
from lnca_cli.engine import restore_tensor
from lnca_cli.errors import SettingsError
from lnca_cli.hub import WeightsError, find_model, load_weights, save_weights
from lnca_cli.images import ImageMeta, as_rgb, read_image, write_image
from lnca_cli.metrics import psnr, quantize8
from lnca_cli.model import LNCA, PRESETS

SPEED_MEGAPIXELS = (1.0, 12.0, 50.0)
BACKEND_NOISE = "gaussian:25"  # what the back ends restore, so that their PSNR can be compared


def speed_variants(devices: str = "auto") -> list[tuple[str, str]]:
    """(device, precision) pairs: "auto" is the CPU (fp32, and bf16 where it has it), plus CUDA fp32,
    fp16 and bf16 when a GPU is present."""
    names = ["cpu", "cuda"] if devices == "auto" and torch.cuda.is_available() else \
        ["cpu"] if devices == "auto" else [d.strip() for d in devices.split(",") if d.strip()]
    variants = []
    for name in names:
        device = resolve_device(name)  # raises a one-line error for a device that is not there
        variants.append((str(device), "fp32"))
        if device.type == "cuda":
            variants += [(str(device), "fp16"), (str(device), "bf16")]
        elif cpu_has_bf16():
            variants.append((str(device), "bf16"))
    return variants


def backend_variants(backends: str = "torch") -> list[tuple[str, str]]:
    """(back end, precision) pairs for "all" or a list such as "torch,openvino": torch fp32 first (the
    reference), then fp32 and bf16 where each runs it; a back end not installed is a SettingsError."""
    names = list(BACKENDS) if backends == "all" else [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise SettingsError(f"--backend takes all or a list of {', '.join(BACKENDS)}; got '{backends}'")
    missing = [name for name in names if installed()[name] is None]
    if missing and backends != "all":
        raise SettingsError(f"--backend {', '.join(missing)}: not installed (pip install \"lnca[onnx]\" or "
                            f"\"lnca[openvino]\")")
    variants = [("torch", "fp32")]
    for name in (name for name in names if name not in missing):
        if name == "torch":
            variants += [("torch", "bf16")] if cpu_has_bf16() else []
        else:
            variants += [(name, "fp32")] + ([(name, "bf16")] if graph_precision(name, "auto") == "bf16" else [])
    return list(dict.fromkeys(variants))


def make_photo(path: Path, megapixels: float, source: Path | None = None) -> tuple[int, int]:
    """A JPEG of about `megapixels`: the source photograph resized (bicubic) to that size, at its aspect
    ratio, or, without a source, a smooth random 3:2 picture. Time and memory do not depend on the content."""
    if source is not None:
        pixels = read_image(source)[0]
        pixels = as_rgb(pixels)
    else:
        pixels = torch.rand(3, 8, 12, generator=torch.Generator().manual_seed(0))
    aspect = pixels.shape[2] / pixels.shape[1]
    height = max(4, round(math.sqrt(megapixels * 1e6 / aspect)))
    width = max(4, round(height * aspect))
    resized = F.interpolate(pixels[None], size=(height, width), mode="bicubic", align_corners=False)[0]
    meta = ImageMeta(mode="RGB", format="JPEG", bit_depth=8, alpha=None, exif=None, icc_profile=None,
                     grayscale=False)
    write_image(path, resized.clamp(0, 1), meta, quality=95)
    return width, height


def timing_model(model: str | None, folder: Path, note: Note) -> tuple[str, str]:
    """(weights file, description): the given model, else the denoise default, else a random one
    of the shipped configuration (time and memory do not depend on the weights)."""
    if model is not None:
        return str(find_model(model)), model
    try:
        return str(find_model("denoise")), "denoise (the default model)"
    except WeightsError:
        note(f"no trained denoise model here: timing a randomly initialised {LATENT_PRESET} model")
        path = folder / f"random-{LATENT_PRESET}.safetensors"
        torch.manual_seed(0)
        save_weights(LNCA(PRESETS[LATENT_PRESET]), path, {"task": "denoise"})
        return str(path), f"random {LATENT_PRESET} (no trained weights; time and memory do not depend on them)"


def check_speed_settings(megapixels: tuple[float, ...], repeats: int = 1) -> None:
    if not megapixels or min(megapixels) <= 0 or repeats < 1:
        raise SettingsError("give positive megapixel sizes and at least one repeat")


def bench_speed(megapixels: tuple[float, ...] = SPEED_MEGAPIXELS, model: str | None = None, steps: int | None = None,
                devices: str = "auto", threads: int | None = None, repeats: int = 1, source: str | None = None,
                note: Note = quiet, previous: bool = True, backends: str = "torch") -> dict:
    """`lnca denoise` on photographs of each size, each run in a fresh process: seconds per megapixel
    (median of `repeats`) and peak memory (process RSS; GPU memory allocated on CUDA). `backends`
    other than "torch" ("all", or a list) adds the back ends side by side (_backends_side_by_side)."""
    check_speed_settings(megapixels, repeats)
    variants = speed_variants(devices)
    backend_rows = backend_variants(backends) if backends != "torch" else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="lnca-bench-") as tmp:
        folder = Path(tmp)
        weights, described = timing_model(model, folder, note)
        photos = []
        for mp in sorted(megapixels):
            note(f"speed: making a {mp:g} MP photograph")
            path = folder / f"photo-{mp:g}mp.jpg"
            photos.append((path, make_photo(path, mp, Path(source) if source else None)))
        for device, precision in variants:
            for path, (width, height) in photos:
                argv = ["denoise", str(path), "-o", str(folder / "out.jpg"), "--overwrite", "--quiet",
                        "--model", weights, "--device", device, "--precision", precision] + \
                       (["--steps", str(steps)] if steps else []) + (["--threads", str(threads)] if threads else [])
                note(f"speed: lnca denoise {width}x{height} on {device} {precision}")
                runs = [run_worker({"job": "denoise", "args": {"argv": argv, "device": device, "threads": threads}})
                        for _ in range(repeats)]
                failed = [run for run in runs if run["code"] != 0]
                if failed:
                    raise RuntimeError(f"lnca denoise failed on {path.name} ({device} {precision}), exit "
                                       f"{failed[0]['code']}")
                seconds = statistics.median(run["seconds"] for run in runs)
                mp = width * height / 1e6
                rows.append({"method": "lnca denoise", "device": device, "precision": precision, "megapixels": mp,
                             "width": width,
                             "height": height, "seconds": seconds, "seconds_per_mp": seconds / mp,
                             "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
                             "baseline_rss_mib": runs[0]["baseline_rss_mib"],
                             "gpu_peak_mib": runs[0]["gpu_peak_mib"]})
        side_by_side = _side_by_side(photos, weights, steps, threads, previous, note)
        by_backend = _backends_side_by_side(photos, weights, steps, threads, backend_rows, repeats, note)
    return {"benchmark": "speed", "machine": {**machine_info("auto"), "backends": installed()},
            "settings": {"megapixels": list(megapixels), "model": described, "steps": steps or "the model's",
                         "threads": threads or torch.get_num_threads(), "repeats": repeats,
                         "source": source or "a smooth random picture", "tile": "auto",
                         "default_precision": resolve_precision(torch.device("cpu")),
                         "backends": backends, "backend_noise": BACKEND_NOISE},
            "rows": rows, "summary": _speed_summary(rows), "side_by_side": side_by_side, "backends": by_backend}


def _side_by_side(photos: list[tuple[Path, tuple[int, int]]], weights: str, steps: int | None, threads: int | None,
                  previous: bool, note: Note) -> list[dict]:
    """Per photograph, one after the other: the restore alone with the fast rule (fp32 and the default
    precision) and with the previous rule (fp32), and OpenCV's NL-means; the ratios, and the fast
    rule's useful GFLOP/s (the NCA's convs on the image's own cells, halos not counted)."""
    default = resolve_precision(torch.device("cpu"))
    opencv = next(peer for peer in PEERS if peer.name == "opencv-nlm")
    rows = []
    for path, (width, height) in photos:
        mp = width * height / 1e6
        row: dict = {"megapixels": mp, "width": width, "height": height}
        for key, rule, precision in (("fast_fp32", "fast", "fp32"), ("fast_default", "fast", default),
                                     *((("previous_fp32", "previous", "fp32"),) if previous else ())):
            note(f"speed: the restore alone, {rule} rule, {precision}, {width}x{height}")
            run = run_worker({"job": "restore", "args": {"path": str(path), "weights": weights, "steps": steps,
                                                         "rule": rule, "precision": precision, "threads": threads}})
            row[f"{key}_seconds"] = run["seconds"]
            cells = math.ceil(height / 4) * math.ceil(width / 4)
            row[f"{key}_gflops"] = run["steps"] * run["flops_per_cell_step"] * cells / run["seconds"] / 1e9
        row["floor_gflop_per_step_per_mp"] = run["flops_per_cell_step"] * 1e6 / 16 / 1e9
        if available(opencv):
            note(f"speed: OpenCV NL-means, {width}x{height}")
            row["opencv_seconds"] = run_worker({"job": "opencv", "args": {"path": str(path), "threads": threads}})[
                "seconds"]
        row["new_over_old"] = ratio_of(row["fast_fp32_seconds"], row.get("previous_fp32_seconds"))
        row["lnca_over_opencv"] = ratio_of(row["fast_default_seconds"], row.get("opencv_seconds"))
        rows.append(row)
    return rows


def _backends_side_by_side(photos: list[tuple[Path, tuple[int, int]]], weights: str, steps: int | None,
                           threads: int | None, variants: list[tuple[str, str]], repeats: int,
                           note: Note) -> list[dict]:
    """Per photograph with BACKEND_NOISE, each (back end, precision) in a fresh process, the repeats
    interleaved (a, b, c, a, b, c...) so that a busy machine slows all alike: the median seconds of the
    restore alone (the second run of the photograph, and the first), the seconds to open the back end
    (export and compile a graph), and the PSNR against
    the clean photograph, with its change against torch fp32's (variants[0])."""
    rows = []
    for path, (width, height) in photos if variants else []:
        runs: dict[tuple[str, str], list[dict]] = {variant: [] for variant in variants}
        for repeat in range(repeats):
            for backend, precision in variants:
                note(f"speed: the restore alone through {backend} {precision}, {width}x{height} "
                     f"({repeat + 1}/{repeats})")
                runs[(backend, precision)].append(run_worker({"job": "backend", "args": {
                    "path": str(path), "weights": weights, "steps": steps, "backend": backend,
                    "precision": precision, "threads": threads}}))
        mp = width * height / 1e6
        reference = runs[variants[0]][0]
        reference_seconds = statistics.median(run["seconds"] for run in runs[variants[0]])
        for (backend, precision), done in runs.items():
            seconds = statistics.median(run["seconds"] for run in done)
            rows.append({"megapixels": mp, "width": width, "height": height, "backend": backend,
                         "precision": precision, "seconds": seconds, "seconds_per_mp": seconds / mp,
                         "first_seconds_per_mp": statistics.median(run["first_seconds"] for run in done) / mp,
                         "open_seconds": statistics.median(run["open_seconds"] for run in done),
                         "speedup": reference_seconds / seconds, "psnr": done[0]["psnr"],
                         "psnr_change": done[0]["psnr"] - reference["psnr"]})
    return rows


def _speed_summary(rows: list[dict]) -> list[dict]:
    """Per device: the fitted seconds per megapixel (slope), and how much the peak grows from the smallest
    to the largest image (1.0 = flat)."""
    summary = []
    for device, precision in dict.fromkeys((r["device"], r["precision"]) for r in rows):
        mine = [r for r in rows if (r["device"], r["precision"]) == (device, precision)]
        memory = "gpu_peak_mib" if mine[0]["gpu_peak_mib"] is not None else "peak_rss_mib"
        slope = fit_line([(r["megapixels"], r["seconds"]) for r in mine])[1] if len(mine) > 1 else None
        summary.append({"device": device, "precision": precision, "fitted_seconds_per_mp": slope,
                        "memory": memory, "memory_growth": mine[-1][memory] / mine[0][memory]})
    return summary


# ---------------------------------------------------------------- what the worker processes run


def denoise_here(argv: list[str], device: str, threads: int | None = None) -> dict:
    """Run `lnca ARGV` in this (fresh) process as `python -m lnca_cli` would; its time, exit code and peaks.

    The clock starts after torch and lnca_cli are imported, so it covers what the command does:
    loading the model, reading, restoring and writing the image.
    """
    import runpy

    if threads:
        torch.set_num_threads(threads)
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(torch_device)
    baseline = proc_status_kib("VmRSS")
    sys.argv = ["lnca", *argv]
    start = time.perf_counter()
    try:
        runpy.run_module("lnca_cli", run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    seconds = time.perf_counter() - start
    peak = proc_status_kib("VmHWM")
    if peak is None:  # no /proc: ru_maxrss, bytes on macOS, KiB elsewhere
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    return {
        "code": code,
        "seconds": seconds,
        "peak_rss_mib": peak / 1024,
        "baseline_rss_mib": baseline / 1024 if baseline is not None else None,
        "gpu_peak_mib": torch.cuda.max_memory_allocated(torch_device) / MIB if torch_device.type == "cuda" else None,
    }


def restore_here(path: str, weights: str, steps: int | None, rule: str, precision: str,
                 threads: int | None = None) -> dict:
    """Seconds of the restore alone (engine.restore_tensor, default tiling) on one photograph, with
    the fast rule or the previous one (previous_rule.py): what the new / old ratio compares."""
    from lnca_cli.devices import keep_freed_memory
    from lnca_cli.previous_rule import PreviousRuleLNCA

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()  # as the CLI does
    model = load_weights(weights)[0]
    model = PreviousRuleLNCA.of(model) if rule == "previous" else model
    pixels = read_image(path)[0]
    restore_tensor(pixels[:, :64, :64], model, steps=steps, device="cpu", precision=precision)  # warm-up
    start = time.perf_counter()
    restore_tensor(pixels, model, steps=steps, device="cpu", precision=precision)
    return {"seconds": time.perf_counter() - start, "steps": steps or model.config.steps,
            "flops_per_cell_step": model.nca.rule.flops_per_cell()}


def opencv_here(path: str, threads: int | None = None) -> dict:
    """Seconds of OpenCV's colour NL-means (the peer a user picks for speed) on one photograph, at the
    settings `lnca bench quality` gives it for sigma 25 (peers.py), decoding not counted."""
    import cv2

    if threads:
        cv2.setNumThreads(threads)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    h = OPENCV_STRENGTH * 25
    cv2.fastNlMeansDenoisingColored(image[:64, :64], None, h, h, 7, 21)  # warm-up
    start = time.perf_counter()
    cv2.fastNlMeansDenoisingColored(image, None, h, h, 7, 21)
    return {"seconds": time.perf_counter() - start}


def backend_here(path: str, weights: str, steps: int | None, backend: str, precision: str,
                 threads: int | None = None) -> dict:
    """Seconds of the restore alone (engine.restore_tensor, default tiling) of one photograph with
    BACKEND_NOISE through one back end: the first run (after a small warm-up; a graph runtime meets
    each tile shape for the first time), and a second, at shapes it has seen (what a batch of photographs
    of one size sees); the seconds to open the back end, and the PSNR."""
    from lnca_cli.devices import keep_freed_memory

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()  # as the CLI does
    model = load_weights(weights)[0]
    clean = as_rgb(read_image(path)[0])
    noisy = parse_degradation(BACKEND_NOISE)(clean[None], torch.Generator().manual_seed(0))[0]
    start = time.perf_counter()
    runner = open_backend(backend, model, steps, "cpu", precision)
    opened = time.perf_counter() - start
    restore_tensor(noisy[:, :64, :64], model, steps=steps, backend=runner)  # warm-up
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        restored = restore_tensor(noisy, model, steps=steps, backend=runner)
        seconds.append(time.perf_counter() - start)
    return {"first_seconds": seconds[0], "seconds": seconds[1], "open_seconds": opened,
            "psnr": psnr(quantize8(restored[None]), quantize8(clean[None])).item()}
