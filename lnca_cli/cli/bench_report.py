"""`lnca bench`'s output: Rich tables, Markdown and plots drawn from a benchmark's result (a plain
dict from lnca_cli.bench, or one read back from a JSON file). Part of the CLI: nothing here measures,
and nothing in lnca_cli.bench imports rich."""
from __future__ import annotations

from PIL import Image
from rich.table import Table

from lnca_cli import __version__
from lnca_cli.plot import line_plot, stack_plots


def _num(value: float | None, places: int = 2, missing: str = "-") -> str:
    return missing if value is None else f"{value:.{places}f}"


def nca_tables(result: dict) -> list[Table]:
    tables = []
    for mode, title in (("inference", f"inference, {result['settings']['steps']} steps"),
                        ("train", f"one training step, {result['settings']['train_steps']} steps")):
        table = Table(title=f"Latent NCA vs pixel NCA: {title}, batch {result['settings']['batch']}")
        for header in ("input", "latent MiB", "pixel MiB", "memory ratio", "latent ms", "pixel ms", "latency ratio"):
            table.add_column(header, justify="right")
        for row in result[mode]:
            over = "over budget"
            table.add_row(f"{row['side']}x{row['side']}", _num(row["latent_mib"], 1, over),
                          _num(row["pixel_mib"], 1, over), _num(row["memory_ratio"], 3), _num(row["latent_ms"], 1),
                          _num(row["pixel_ms"], 1), _num(row["latency_ratio"], 3))
        tables.append(table)
    summary = Table(title=f"In the paper's terms (memory budget {result['settings']['budget_mib']:g} MiB)")
    for header in ("", "inference", "training step", "paper"):
        summary.add_column(header, justify="right")

    def side(latent, pixel):
        return f"{latent} vs {pixel} px" if latent else "-"

    summary.add_row("memory saved, %", _num(result["memory_saving_pct"], 1), _num(result["train_memory_saving_pct"], 1),
                    "~94")
    summary.add_row("latency saved, %", _num(result["latency_saving_pct"], 1),
                    _num(result["train_latency_saving_pct"], 1), "~80")
    summary.add_row("largest input side", side(result["max_side_latent"], result["max_side_pixel"]),
                    side(result["train_max_side_latent"], result["train_max_side_pixel"]), "")
    summary.add_row("times more pixels", _num(result["input_ratio"], 1), _num(result["train_input_ratio"], 1), "16")
    tables.append(summary)
    return tables


def speed_tables(result: dict) -> list[Table]:
    table = Table(title=f"lnca denoise, {result['settings']['model']}, steps: {result['settings']['steps']}, "
                        f"{result['settings']['threads']} CPU threads")
    for header in ("device", "precision", "image", "MP", "seconds", "s/MP", "peak RSS MiB", "GPU peak MiB"):
        table.add_column(header, justify="right")
    for r in result["rows"]:
        table.add_row(r["device"], r["precision"], f"{r['width']}x{r['height']}", _num(r["megapixels"], 1),
                      _num(r["seconds"], 1), _num(r["seconds_per_mp"], 2), _num(r["peak_rss_mib"], 0),
                      _num(r["gpu_peak_mib"], 0))
    tables = [table, side_by_side_table(result)] if result.get("side_by_side") else [table]
    return tables + ([backends_table(result)] if result.get("backends") else [])


def backends_table(result: dict) -> Table:
    """The restore alone through each back end, one after the other on each photograph."""
    s = result["settings"]
    table = Table(title=f"The restore alone through each back end, {s['backend_noise']} (median of {s['repeats']}; "
                        f"s/MP of a second run, at tile shapes seen; PSNR against the clean photograph, and its change "
                        f"against torch fp32)")
    for header in ("MP", "back end", "precision", "s/MP", "x torch fp32", "first run s/MP", "open s", "PSNR dB",
                   "PSNR change dB"):
        table.add_column(header, justify="right")
    for r in result["backends"]:
        table.add_row(_num(r["megapixels"], 1), r["backend"], r["precision"], _num(r["seconds_per_mp"], 2),
                      _num(r["speedup"], 2), _num(r["first_seconds_per_mp"], 2), _num(r["open_seconds"], 1),
                      _num(r["psnr"], 2), f"{r['psnr_change']:+.3f}")
    return table


def side_by_side_table(result: dict) -> Table:
    """The restore alone, one method after the other on each photograph: fast rule against the previous
    one, and lnca (default precision) against OpenCV's NL-means."""
    default = result["settings"].get("default_precision", "fp32")
    table = Table(title=f"The restore alone, side by side (s/MP; GFLOP/s of the NCA's convs, floor "
                        f"{result['side_by_side'][0]['floor_gflop_per_step_per_mp']:.1f} GFLOP per step per MP)")
    for header in ("MP", "previous fp32", "fast fp32", f"fast {default}", "OpenCV NLM", "new / old",
                   "lnca / opencv", "GFLOP/s fp32", f"GFLOP/s {default}"):
        table.add_column(header, justify="right")
    for r in result["side_by_side"]:
        mp = r["megapixels"]

        def per_mp(key):
            return _num(r[key] / mp if r.get(key) is not None else None, 2)

        table.add_row(_num(mp, 1), per_mp("previous_fp32_seconds"), per_mp("fast_fp32_seconds"),
                      per_mp("fast_default_seconds"), per_mp("opencv_seconds"), _num(r["new_over_old"], 3),
                      _num(r["lnca_over_opencv"], 3), _num(r["fast_fp32_gflops"], 0),
                      _num(r["fast_default_gflops"], 0))
    return table


def train_tables(result: dict) -> list[Table]:
    s = result["settings"]
    table = Table(title=f"Training iterations: fast rule vs previous, batch {s['batch']} of {s['crop']}x{s['crop']}, "
                        f"{s['steps']} NCA steps, {result['machine'].get('torch_threads', '?')} threads")
    for header in ("phase", "fast it/s", "previous it/s", "speed-up"):
        table.add_column(header, justify="right")
    for r in result["rows"]:
        table.add_row({"nca": "2: NCA", "e2e": "3: end to end"}[r["mode"]], _num(r["fast_per_s"], 2),
                      _num(r["previous_per_s"], 2), _num(r["speedup"], 2))
    return [table]


def quality_tables(result: dict) -> list[Table]:
    tables = []
    for part in result["tables"]:
        table = Table(title=f"{part['degradation']}: {part['images']} images, {part['megapixels']:.2f} MP")
        for header in ("method", "PSNR dB", "SSIM", "mottle", "s/MP", "status"):
            table.add_column(header, justify="left" if header in ("method", "status") else "right")
        for r in part["rows"]:  # results written before the mottle column show "-" for it
            table.add_row(r["method"], _num(r["psnr"], 2), _num(r["ssim"], 4), _num(r.get("mottle"), 2),
                          _num(r["seconds_per_mp"], 2), r["status"])
        tables.append(table)
    return [*tables, method_table(result)]


def method_table(result: dict) -> Table:
    """Each method of the quality tables once (lnca once per model): its settings and version."""
    table = Table(title="Methods: settings and versions")
    for header in ("method", "version", "settings"):
        table.add_column(header)
    rows = {(r["method"], r["settings"]): r
            for part in result["tables"] for r in part["rows"] if r["method"] != "input"}
    for r in rows.values():
        lnca_version = "lnca " + __version__ if r["method"].startswith("lnca") else "-"
        table.add_row(r["method"], r.get("version") or lnca_version, r["settings"])
    return table


def steps_tables(result: dict) -> list[Table]:
    table = Table(title=f"Steps vs quality vs time: {result['model']} on {result['degradation']}, "
                        f"{result['images']} images")
    for header in ("steps", "PSNR dB", "SSIM", "s/MP"):
        table.add_column(header, justify="right")
    for r in result["rows"]:
        table.add_row(str(r["steps"]), _num(r["psnr"], 2), _num(r["ssim"], 4), _num(r["seconds_per_mp"], 2))
    return [table]


def ray_tables(result: dict) -> list[Table]:
    s, costs, ray = result["settings"], result["overhead"], result["ray"]
    table = Table(title=f"lnca denoise on {s['images']} photographs of {s['width']}x{s['height']}, {s['model']}: the "
                        f"local engine and Ray {ray['version']} ({ray['address']}, {ray['cluster_cpus']} CPUs), "
                        f"median of {s['repeats']}")
    for header in ("engine", "workers", "threads each", "seconds", "images/s", "speed-up", "same files"):
        table.add_column(header, justify="left" if header == "engine" else "right")
    for r in result["rows"]:
        table.add_row(r["engine"], str(r["workers"] or "-"), str(r["threads"]), _num(r["seconds"], 2),
                      _num(r["images_per_s"], 2), _num(r["speedup"], 2), "yes" if r["identical"] else "NO")
    fixed = Table(title=f"What Ray costs, on images of {costs['tiny_side']} px: its start-up, a job's start (1 "
                        f"image), and each file ({costs['tiny_files']} images, 1 worker vs 1 thread)")
    for header in ("Ray start-up s", "job start s", "ms/file, ray", "ms/file, local", "overhead ms/file"):
        fixed.add_column(header, justify="right")
    fixed.add_row(_num(ray["startup_s"], 2), _num(costs["job_start_s"], 2), _num(costs["ray_per_file_ms"], 1),
                  _num(costs["local_per_file_ms"], 1), _num(costs["per_file_ms"], 1))
    return [table, fixed]


def _series(rows: list[dict], x: str, ys: dict[str, str]) -> dict[str, list[tuple[float, float]]]:
    return {name: [(row[x], row[key]) for row in rows if row.get(key) is not None] for name, key in ys.items()}


def nca_plot(result: dict) -> Image.Image:
    rows = result["inference"]
    return stack_plots([
        line_plot(_series(rows, "side", {"latent NCA": "latent_mib", "pixel NCA": "pixel_mib"}),
                  "Inference peak memory", "input side (px)", "MiB", log_y=True),
        line_plot(_series(rows, "side", {"latent NCA": "latent_ms", "pixel NCA": "pixel_ms"}),
                  "Inference latency", "input side (px)", "ms", log_y=True),
    ])


def speed_plot(result: dict) -> Image.Image:
    variants = dict.fromkeys((r["device"], r["precision"]) for r in result["rows"])
    seconds, memory = {}, {}
    for device, precision in variants:
        rows = [r for r in result["rows"] if (r["device"], r["precision"]) == (device, precision)]
        key = "gpu_peak_mib" if rows[0]["gpu_peak_mib"] is not None else "peak_rss_mib"
        seconds[f"{device} {precision}"] = [(r["megapixels"], r["seconds"]) for r in rows]
        memory[f"{device} {precision}"] = [(r["megapixels"], r[key]) for r in rows]
    return stack_plots([line_plot(seconds, "lnca denoise: time", "megapixels", "seconds"),
                        line_plot(memory, "lnca denoise: peak memory (RSS; GPU allocated on CUDA)", "megapixels",
                                  "MiB")])


def steps_plot(result: dict) -> Image.Image:
    rows = result["rows"]
    return stack_plots([line_plot(_series(rows, "steps", {"PSNR": "psnr"}), "Steps vs PSNR", "steps", "dB"),
                        line_plot(_series(rows, "steps", {"seconds per MP": "seconds_per_mp"}), "Steps vs time",
                                  "steps", "s/MP")])


TABLES = {"nca": nca_tables, "speed": speed_tables, "train": train_tables, "quality": quality_tables,
          "steps": steps_tables, "ray": ray_tables}
PLOTS = {"nca": nca_plot, "speed": speed_plot, "steps": steps_plot}


def tables_of(result: dict) -> list[Table]:
    """Tables for one benchmark's result, or for every part of `lnca bench all`'s."""
    if result.get("benchmark") == "all":
        return [table for name in TABLES if name in result for table in TABLES[name](result[name])]
    return TABLES[result["benchmark"]](result)


def markdown_of(tables: list[Table]) -> str:
    """The tables as Markdown (a bold title, then a pipe table), for docs/BENCHMARKS.md."""
    blocks = []
    for table in tables:
        lines = [f"**{table.title}**", "", "| " + " | ".join(str(c.header) for c in table.columns) + " |",
                 "|" + "|".join("---" for _ in table.columns) + "|"]
        lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |"
                  for row in zip(*(column.cells for column in table.columns))]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def plot_of(result: dict) -> Image.Image | None:
    """The plot for one benchmark's result (None for quality), or all of them stacked for `all`."""
    if result.get("benchmark") == "all":
        return stack_plots([PLOTS[name](result[name]) for name in PLOTS if name in result])
    plot = PLOTS.get(result["benchmark"])
    return plot(result) if plot else None
