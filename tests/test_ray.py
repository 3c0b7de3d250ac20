"""The Ray engine (`--engine ray`) and restore_dataset, on a real local Ray instance: the same files, lines
and exit codes as the local engine, a bad file failing alone, a worker that dies, Ctrl-C.

Ray is optional: without it (pip install "lnca[ray]") the tests that need it are skipped, and what lnca
says when it is missing is tested instead. The tests share one Ray instance of 2 CPUs per module (it
takes seconds to start); each job still starts its own worker processes, so they are few.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import lnca_cli.distributed as distributed
from conftest import lnca, write_photo
from lnca_cli.api import RestoreSettings, plan_jobs
from lnca_cli.distributed import FileWorker, Workers, restore_dataset, restore_files_on_ray
from lnca_cli.engine import restore
from lnca_cli.hub import load_model

NEEDS_RAY = 'the Ray engine needs Ray: pip install "lnca[ray]"'


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance of 2 CPUs for the module's tests; the engine uses it as it is."""
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    pytest.importorskip("ray.data", reason=NEEDS_RAY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def photos(tmp_path):
    """A folder with a sub-folder: colour, grayscale and RGBA images, a JPEG, and a corrupt file."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    write_photo(folder / "a.png", size=(40, 32))
    write_photo(folder / "b.jpg", size=(33, 21), seed=1)
    write_photo(folder / "sub" / "gray.png", size=(24, 24), mode="L", seed=2)
    write_photo(folder / "sub" / "alpha.png", size=(20, 28), mode="RGBA", seed=3)
    (folder / "broken.jpg").write_text("this is text, not a JPEG")
    return folder


def _records(result, out) -> list[dict]:
    """The --json lines, without the seconds and with the output folder named OUT."""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        del record["seconds"]
        record["output"], record["error"] = (record[key].replace(str(out), "OUT") for key in ("output", "error"))
    return records


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- without Ray, or with bad options


def test_engine_ray_without_ray_says_how_to_install_it(photos, tiny_weights, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is not installed
    result = lnca("denoise", photos, "-o", tmp_path / "out", "-m", tiny_weights, "--engine", "ray")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        'error: the Ray engine needs Ray, which is not installed: pip install "lnca[ray]"']
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "2"], "--workers goes with --engine ray"),
    (["--ray-address", "auto", "--gpus-per-worker", "1"], "--ray-address, --gpus-per-worker go with --engine ray"),
    (["--engine", "spark"], "--engine must be local or ray, got 'spark'"),
])
def test_ray_options_without_the_ray_engine_are_usage_errors(photos, tiny_weights, tmp_path, args, message):
    result = lnca("denoise", photos, "-o", tmp_path / "out", "-m", tiny_weights, *args)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


@pytest.mark.parametrize("args, message", [
    (["-o", "-"], "--engine ray reads and writes files; stdin and stdout (-) need --engine local"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: nothing answers there"),
    (["--ray-address", "nowhere"], "--ray-address must be auto, HOST:PORT or ray://HOST:PORT; got 'nowhere'"),
    (["--workers", "3", "--threads", "1"], "3 workers of 1 CPU thread need 3 CPUs, but the Ray cluster has 2"),
])
def test_bad_ray_settings_are_one_line_before_any_file(ray_instance, photos, tiny_weights, tmp_path, args, message):
    result = lnca("denoise", photos / "a.png", "-m", tiny_weights, "-q", "--engine", "ray", *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert not (photos / "a_denoise.png").exists()


# ---------------------------------------------------------------- the same as the local engine


def test_ray_gives_the_local_engine_s_files_lines_and_exit_code(ray_instance, photos, tiny_weights, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    for out in (local, on_ray):  # the user's own file where an output would go: never replaced
        out.mkdir()
        write_photo(out / "c_denoise.png", seed=9)
    write_photo(photos / "c.png", seed=4)
    by_local = lnca("denoise", photos, "-r", "-o", local, "-m", tiny_weights, "--json")
    args = ("denoise", photos, "-r", "-o", on_ray, "-m", tiny_weights, "--json", "--engine", "ray", "--workers", "2")
    by_ray = lnca(*args)
    assert by_local.exit_code == by_ray.exit_code == 1  # the corrupt file and c fail alone
    assert _records(by_ray, on_ray) == _records(by_local, local)
    assert [r["status"] for r in _records(by_ray, on_ray)] == ["done", "done", "failed", "failed", "done", "done"]
    assert "lnca did not write it" in _records(by_ray, on_ray)[3]["error"]
    assert _files(on_ray) == _files(local) and len(_files(local)) == 5  # byte for byte, the user's file too

    again = lnca(*args)  # a rerun skips what is done
    assert [r["status"] for r in _records(again, on_ray)] == ["skipped", "skipped", "failed", "failed", "skipped",
                                                              "skipped"]
    assert again.exit_code == 1 and _files(on_ray) == _files(local)


# ---------------------------------------------------------------- restore_dataset


def test_restore_dataset_restores_each_image_as_restore_does(ray_instance, tiny_weights):
    model = load_model(tiny_weights)
    rng = np.random.default_rng(0)
    same_size = rng.integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    sizes = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((16, 20), (28, 12))]
    workers = Workers(count=1, threads=1)

    from_numpy = restore_dataset(ray_instance.data.from_numpy(same_size), tiny_weights, column="data",
                                 workers=workers).take_all()
    # Ray Data keeps no row order unless told to (DataContext.execution_options.preserve_order): compare as sets
    def by_bytes(images):
        return sorted(images, key=lambda image: image.tobytes())

    for got, expected in zip(by_bytes([row["data"] for row in from_numpy]),
                             by_bytes([restore(image, model) for image in same_size]), strict=True):
        np.testing.assert_array_equal(got, expected)

    items = [{"image": image, "name": f"photo{i}"} for i, image in enumerate(sizes)]
    from_items = restore_dataset(ray_instance.data.from_items(items), tiny_weights, workers=workers,
                                 settings=RestoreSettings(steps=2, ensemble=2)).take_all()
    from_items = sorted(from_items, key=lambda row: row["name"])
    assert [row["name"] for row in from_items] == ["photo0", "photo1"]  # other columns as they were
    for row, image in zip(from_items, sizes):
        assert row["image"].dtype == np.uint8 and row["image"].shape == image.shape
        np.testing.assert_array_equal(row["image"], restore(image, model, steps=2, ensemble=2))
    assert any(not np.array_equal(row["image"], restore(image, model, steps=2))  # the views were restored
               for row, image in zip(from_items, sizes))


def test_restore_dataset_checks_its_settings_first(ray_instance, tiny_weights):
    with pytest.raises(distributed.SettingsError, match="--steps must be between"):
        restore_dataset(ray_instance.data.from_items([{"image": np.zeros((8, 8, 3), np.uint8)}]), tiny_weights,
                        settings=RestoreSettings(steps=0))


# ---------------------------------------------------------------- workers that die, Ctrl-C


class DyingWorker(FileWorker):
    """A worker whose process dies on files named die*, every time, and on files named once*, the first time."""

    def restore_job(self, job):
        name, died = os.path.basename(job.source), job.source + ".died"
        if name.startswith("die") or (name.startswith("once") and not os.path.exists(died)):
            open(died, "w").close()
            os._exit(1)
        return super().restore_job(job)


@pytest.mark.slow
def test_a_worker_that_dies_has_its_file_tried_again_once(ray_instance, tmp_path, tiny_weights):
    ray_instance.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(("a", "once", "die", "b")):
        write_photo(folder / f"{name}.png", seed=i)
    jobs = plan_jobs([str(folder / f"{n}.png") for n in ("a", "once", "die", "b")], "denoise", str(tmp_path / "out"))
    results = restore_files_on_ray(jobs, load_model(tiny_weights), RestoreSettings(), Workers(1), worker=DyingWorker)
    assert [r.status for r in results] == ["done", "done", "failed", "done"]
    assert results[2].error == f"{jobs[2].source}: the Ray worker restoring it died, twice (out of memory?)"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_denoise.png", "b_denoise.png",
                                                                   "once_denoise.png"]


@pytest.mark.slow
def test_ctrl_c_stops_a_ray_run_cleanly_and_a_rerun_finishes(tmp_path, tiny_weights):
    pytest.importorskip("ray.data", reason=NEEDS_RAY)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(16):
        write_photo(folder / f"{i:02}.png", size=(96, 96), seed=i)
    argv = [sys.executable, "-m", "lnca_cli", "denoise", folder, "-o", out, "-m", tiny_weights, "--json",
            "--steps", "1000", "--engine", "ray", "--workers", "2"]
    # Its own process group, as a terminal's Ctrl-C reaches lnca and every process it started (Ray's too).
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            bufsize=0)  # unbuffered: readline takes one line, and communicate() the rest
    first = proc.stdout.readline()  # a file is done: the workers are at work
    os.killpg(proc.pid, signal.SIGINT)
    rest, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    done = [json.loads(line) for line in (first + rest).splitlines()]
    assert done and all(r["status"] == "done" for r in done) and len(done) < 16
    assert "files not started; run the same command again" in stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == sorted(os.path.basename(r["output"]) for r in done)  # whole,
    # and no temporary file left
    again = subprocess.run(argv, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()
    statuses = [json.loads(line)["status"] for line in again.stdout.splitlines()]
    assert statuses.count("skipped") == len(done) and statuses.count("done") == 16 - len(done)
    assert len(list(out.iterdir())) == 16
    for path in out.iterdir():
        with Image.open(path) as image:
            image.load()  # whole: a truncated file fails here


# ---------------------------------------------------------------- lnca bench ray


@pytest.mark.slow
def test_bench_ray_times_each_engine_on_the_same_files(ray_instance, tiny_weights, tmp_path):
    result = lnca("bench", "ray", "--images", "2", "--megapixels", "0.002", "--workers", "1,2", "--model", tiny_weights,
                  "--json", "--out", tmp_path / "ray.json")
    assert result.exit_code == 0, result.stderr
    measured = json.loads(result.stdout)
    assert [r["variant"] for r in measured["rows"]] == ["local, 1 thread", "local, 2 threads", "ray, 1 worker",
                                                        "ray, 2 workers"]
    assert all(r["identical"] and r["images_per_s"] > 0 and r["images"] == 2 for r in measured["rows"])
    assert measured["ray"]["startup_s"] is None  # it joined the running instance
    assert {"job_start_s", "per_file_ms"} <= set(measured["overhead"])
    shown = lnca("bench", "show", tmp_path / "ray.json", "--markdown")
    assert shown.exit_code == 0 and "What Ray costs" in shown.stdout and "| ray | 2 | 1 |" in shown.stdout
