"""The `lnca` command line: outputs, folders, skipping, errors and exit codes, stdin/stdout.

Most tests run the Typer app in-process (CliRunner keeps stdout and stderr apart); the
stdin/stdout pipes, --help and the "no traceback" promise run `python -m lnca_cli` for real.
Exit codes: 0 all done or skipped, 1 some files failed, 2 bad usage or settings.
"""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import lnca_cli
import lnca_cli.devices as devices
from conftest import lnca, random_model, write_photo
from lnca_cli.hub import save_weights
from lnca_cli.images import read_image
from lnca_cli.model import LNCA

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
JSON_KEYS = {"input", "output", "status", "seconds", "size", "error"}


def lnca_process(*args, stdin: bytes = b"", cwd=None) -> subprocess.CompletedProcess:
    """Run `python -m lnca_cli ARGS` as a real process, bytes in and out."""
    return subprocess.run([sys.executable, "-m", "lnca_cli", *map(str, args)], input=stdin, capture_output=True,
                          cwd=cwd, timeout=120)


def files_in(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).astype(int)


@pytest.fixture
def photo(tmp_path):
    """A 24x20 JPEG in tmp_path."""
    path = tmp_path / "a.jpg"
    write_photo(path)
    return path


@pytest.fixture
def sharp_weights(tmp_path) -> str:
    """The tiny architecture with every neighbour exchange live (gates and BatchNorm randomised)."""
    path = tmp_path / "sharp.safetensors"
    save_weights(random_model(sharp=True), path, {"task": "denoise"})
    return str(path)


# ---------------------------------------------------------------- tasks and output names


def test_denoise_writes_beside_the_input(photo, tiny_weights):
    result = lnca("denoise", photo, "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    output = photo.with_name("a_denoise.jpg")
    assert output.read_bytes()[:3] == JPEG_MAGIC
    with Image.open(output) as image:
        assert image.size == (24, 20)
    assert result.stdout == ""  # human messages go to stderr


def test_deblur_writes_deblur_suffix(photo, tiny_weights):
    result = lnca("deblur", photo, "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert photo.with_name("a_deblur.jpg").is_file()
    assert not photo.with_name("a_denoise.jpg").exists()


def test_restore_with_task(photo, tiny_weights):
    result = lnca("restore", "--task", "denoise", photo, "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert photo.with_name("a_denoise.jpg").is_file()


def test_restore_unknown_task_is_a_usage_error(photo, tiny_weights, tmp_path):
    before = files_in(tmp_path)
    result = lnca("restore", "--task", "foo", photo, "-m", tiny_weights)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "foo" in lines[0]
    assert files_in(tmp_path) == before


def test_suffix_option(photo, tiny_weights):
    result = lnca("denoise", photo, "-m", tiny_weights, "--suffix", "clean")
    assert result.exit_code == 0, result.stderr
    assert photo.with_name("a_clean.jpg").is_file()
    assert not photo.with_name("a_denoise.jpg").exists()


@pytest.mark.parametrize("flag", ["--ext", "--format"])
def test_ext_option_changes_the_format(photo, tiny_weights, flag):
    result = lnca("denoise", photo, "-m", tiny_weights, flag, "png")
    assert result.exit_code == 0, result.stderr
    output = photo.with_name("a_denoise.png")
    assert output.read_bytes()[:8] == PNG_MAGIC
    with Image.open(output) as image:
        assert image.format == "PNG" and image.size == (24, 20)
    assert not photo.with_name("a_denoise.jpg").exists()


def test_bad_ext_is_a_usage_error(photo, tiny_weights, tmp_path):
    before = files_in(tmp_path)
    result = lnca("denoise", photo, "-m", tiny_weights, "--ext", "xyz")
    assert result.exit_code == 2
    assert "xyz" in result.stderr
    assert files_in(tmp_path) == before


def test_output_file_takes_format_from_its_extension(photo, tiny_weights, tmp_path):
    target = tmp_path / "result" / "clean.png"
    target.parent.mkdir()
    result = lnca("denoise", photo, "-m", tiny_weights, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert os.listdir(target.parent) == ["clean.png"]
    assert target.read_bytes()[:8] == PNG_MAGIC
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size == (24, 20)
    assert not photo.with_name("a_denoise.jpg").exists()


def test_output_file_with_two_inputs_is_a_usage_error(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    write_photo(tmp_path / "b.png", seed=1)
    result = lnca("denoise", tmp_path / "a.png", tmp_path / "b.png", "-m", tiny_weights, "-o", tmp_path / "out.png")
    assert result.exit_code == 2
    assert "out.png" in result.stderr
    assert files_in(tmp_path) == {"a.png", "b.png", "tiny.safetensors"}


# ---------------------------------------------------------------- folders


@pytest.fixture
def folder(tmp_path):
    """photos/{a.png, b.jpg, notes.txt, sub/c.png}"""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    write_photo(root / "a.png")
    write_photo(root / "b.jpg", seed=1)
    write_photo(root / "sub" / "c.png", seed=2)
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_processes_only_its_own_images(folder, tiny_weights):
    result = lnca("denoise", folder, "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert files_in(folder) == {"a.png", "b.jpg", "notes.txt", "sub", "sub/c.png", "a_denoise.png", "b_denoise.jpg"}


@pytest.mark.parametrize("flag", ["--recursive", "-r"])
def test_recursive_folder_processes_sub_folders(folder, tiny_weights, flag):
    result = lnca("denoise", folder, "-m", tiny_weights, flag)
    assert result.exit_code == 0, result.stderr
    assert files_in(folder) == {"a.png", "b.jpg", "notes.txt", "sub", "sub/c.png", "a_denoise.png", "b_denoise.jpg",
                                "sub/c_denoise.png"}


def test_output_folder_mirrors_sub_folders(folder, tiny_weights, tmp_path):
    before = files_in(folder)
    out = tmp_path / "clean"
    result = lnca("denoise", folder, "-m", tiny_weights, "-r", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert files_in(out) == {"a_denoise.png", "b_denoise.jpg", "sub", "sub/c_denoise.png"}
    with Image.open(out / "sub" / "c_denoise.png") as image:
        assert image.format == "PNG" and image.size == (24, 20)
    assert files_in(folder) == before


def test_empty_folder_is_a_usage_error(tmp_path, tiny_weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = lnca("denoise", empty, "-m", tiny_weights)
    assert result.exit_code == 2
    assert "no input images" in result.stderr
    assert not any(empty.iterdir())


def test_folder_without_images_is_a_usage_error(tmp_path, tiny_weights):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    result = lnca("denoise", tmp_path / "docs", "-m", tiny_weights)
    assert result.exit_code == 2
    assert files_in(tmp_path / "docs") == {"readme.txt"}


def test_rerun_on_folder_does_not_restore_earlier_outputs(folder, tiny_weights):
    assert lnca("denoise", folder, "-m", tiny_weights, "-r").exit_code == 0
    after_first = files_in(folder)
    for flags in ([], ["--overwrite"]):
        result = lnca("denoise", folder, "-m", tiny_weights, "-r", "--json", *flags)
        assert result.exit_code == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert sorted(os.path.basename(r["input"]) for r in records) == ["a.png", "b.jpg", "c.png"]
        assert files_in(folder) == after_first  # no a_denoise_denoise.png


# ---------------------------------------------------------------- skip, overwrite, inputs are safe


def test_existing_output_is_skipped(photo, tiny_weights):
    assert lnca("denoise", photo, "-m", tiny_weights).exit_code == 0
    output = photo.with_name("a_denoise.jpg")
    earlier = output.read_bytes()
    os.utime(output, (1_000_000, 1_000_000))
    result = lnca("denoise", photo, "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert "skipped" in result.stderr and "--overwrite" in result.stderr
    assert output.read_bytes() == earlier
    assert output.stat().st_mtime == 1_000_000


def test_second_run_skips_and_json_says_so(photo, tiny_weights):
    assert lnca("denoise", photo, "-m", tiny_weights).exit_code == 0
    output = photo.with_name("a_denoise.jpg")
    first, mtime = output.read_bytes(), output.stat().st_mtime_ns
    result = lnca("denoise", photo, "-m", tiny_weights, "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["status"] == "skipped" and record["output"] == str(output)
    assert output.read_bytes() == first and output.stat().st_mtime_ns == mtime


def test_overwrite_replaces_existing_output(photo, tiny_weights):
    assert lnca("denoise", photo, "-m", tiny_weights, "--steps", "1").exit_code == 0
    output = photo.with_name("a_denoise.jpg")
    earlier = output.read_bytes()
    result = lnca("denoise", photo, "-m", tiny_weights, "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert output.read_bytes() != earlier
    assert output.read_bytes()[:3] == JPEG_MAGIC
    with Image.open(output) as image:
        assert image.size == (24, 20)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_never_overwrites_the_input(photo, tiny_weights, tmp_path, overwrite):
    original = photo.read_bytes()
    result = lnca("denoise", photo, "-m", tiny_weights, "-o", photo, *overwrite)
    assert result.exit_code == 1
    assert "a.jpg" in result.stderr and "input" in result.stderr
    assert photo.read_bytes() == original
    assert files_in(tmp_path) == {"a.jpg", "tiny.safetensors"}


def test_output_never_overwrites_another_input(tmp_path, tiny_weights):
    """`lnca denoise a.png a_denoise.png`: a.png's output is the second input, which stays intact."""
    write_photo(tmp_path / "a.png")
    write_photo(tmp_path / "a_denoise.png", seed=1)
    original = (tmp_path / "a_denoise.png").read_bytes()
    result = lnca("denoise", tmp_path / "a.png", tmp_path / "a_denoise.png", "-m", tiny_weights, "--overwrite")
    assert result.exit_code == 1
    assert (tmp_path / "a_denoise.png").read_bytes() == original
    assert (tmp_path / "a_denoise_denoise.png").is_file()


# ---------------------------------------------------------------- --json


def test_json_lines(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png", size=(24, 20))
    write_photo(tmp_path / "b.png", size=(20, 28), seed=1)
    result = lnca("denoise", tmp_path / "a.png", tmp_path / "b.png", "-m", tiny_weights, "--json")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    for record in records:
        assert set(record) == JSON_KEYS
        assert record["status"] == "done" and record["error"] == ""
        assert isinstance(record["seconds"], (int, float)) and record["seconds"] >= 0
    assert [r["input"] for r in records] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert [r["output"] for r in records] == [str(tmp_path / "a_denoise.png"), str(tmp_path / "b_denoise.png")]
    assert [r["size"] for r in records] == [[24, 20], [20, 28]]  # [width, height]


def test_json_reports_failures(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    result = lnca("denoise", tmp_path / "a.png", tmp_path / "bad.jpg", "-m", tiny_weights, "--json")
    assert result.exit_code == 1
    records = {os.path.basename(r["input"]): r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"a.png", "bad.jpg"}
    assert records["a.png"]["status"] == "done"
    assert records["bad.jpg"]["status"] == "failed" and "bad.jpg" in records["bad.jpg"]["error"]


# ---------------------------------------------------------------- failures


def _batch_with_corrupt_files(tmp_path):
    write_photo(tmp_path / "a.png")
    (tmp_path / "bad.jpg").write_text("this is text, not a JPEG")
    write_photo(tmp_path / "whole.png", seed=1)
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "whole.png").unlink()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    write_photo(tmp_path / "z.jpg", seed=2)


def test_corrupt_files_do_not_stop_the_batch(tmp_path, tiny_weights):
    _batch_with_corrupt_files(tmp_path)
    result = lnca("denoise", tmp_path, "-m", tiny_weights)
    assert result.exit_code == 1
    assert (tmp_path / "a_denoise.png").is_file() and (tmp_path / "z_denoise.jpg").is_file()
    assert not (tmp_path / "bad_denoise.jpg").exists() and not (tmp_path / "trunc_denoise.png").exists()
    lines = result.stderr.splitlines()
    assert "failed files:" in lines
    summary = lines[lines.index("failed files:") + 1:]
    assert len(summary) == 2
    assert "bad.jpg" in summary[0] + summary[1] and "trunc.png" in summary[0] + summary[1]
    assert "Traceback" not in result.stdout + result.stderr


def test_corrupt_files_give_no_traceback_in_a_real_process(tmp_path, tiny_weights):
    _batch_with_corrupt_files(tmp_path)
    proc = lnca_process("denoise", tmp_path, "-m", tiny_weights)
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "bad.jpg" in stderr and "trunc.png" in stderr
    assert b"Traceback" not in proc.stdout + proc.stderr
    assert stderr.rstrip().splitlines()[-3] == "failed files:"
    assert (tmp_path / "a_denoise.png").is_file() and (tmp_path / "z_denoise.jpg").is_file()


def test_missing_input_file(tmp_path, tiny_weights):
    missing = tmp_path / "missing.jpg"
    result = lnca("denoise", missing, "-m", tiny_weights)
    assert result.exit_code == 1
    naming = [line for line in result.stderr.splitlines() if "missing.jpg" in line]
    assert len(naming) == 1 and "no such file or folder" in naming[0]
    assert "Traceback" not in result.stderr
    assert files_in(tmp_path) == {"tiny.safetensors"}


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize("args", [
    ["--steps", "0"],
    ["--steps", "-3"],
    ["--steps", "abc"],
    ["--tile", "abc"],
    ["--tile", "8"],  # the halo is (4 + 4) * 4 = 32 px at the tiny model's 4 steps
    ["--tile", "31"],
    ["--device", "nonsense"],
    ["--device", "cuda"],
    ["--half"],
    ["--precision", "fp16"],
    ["--precision", "fp8"],
    ["--half", "--precision", "bf16"],
    ["--threads", "0"],
    ["-m", "missing.safetensors"],
    ["-m", "unknown-name"],
    ["--quality", "0"],
    ["--quality", "101"],
], ids=lambda args: " ".join(args))
def test_bad_settings_exit_2_before_any_output(photo, tiny_weights, tmp_path, args):
    if args == ["--device", "cuda"] and __import__("torch").cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    if ("--half" in args or "fp16" in args) and devices.resolve_device("auto").type != "cpu":
        pytest.skip("--half is valid on this machine's GPU")
    model = [] if args[0] == "-m" else ["-m", tiny_weights]
    before = files_in(tmp_path)
    result = lnca("denoise", photo, *model, *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip(), "a bad setting must say what is wrong"
    assert "Traceback" not in result.stderr
    assert files_in(tmp_path) == before


def test_tile_at_least_the_halo_is_accepted(photo, tiny_weights):
    result = lnca("denoise", photo, "-m", tiny_weights, "--tile", "32")
    assert result.exit_code == 0, result.stderr


def test_negative_tile_is_a_usage_error(photo, tiny_weights):
    result = lnca("denoise", photo, "-m", tiny_weights, "--tile", "-5")
    assert result.exit_code == 2


# ---------------------------------------------------------------- stdin / stdout


def test_stdin_to_stdout_png(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png", size=(24, 20))
    proc = lnca_process("denoise", "-", "-m", tiny_weights, stdin=(tmp_path / "a.png").read_bytes(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(PNG_MAGIC)
    assert proc.stdout.endswith(b"IEND\xaeB`\x82")  # nothing after the image
    with Image.open(io.BytesIO(proc.stdout)) as image:
        assert image.format == "PNG" and image.size == (24, 20)
        image.load()
    stderr = proc.stderr.decode()
    assert "UNTRAINED" in stderr and "done" in stderr  # human messages on stderr
    assert files_in(tmp_path) == {"a.png", "tiny.safetensors"}


def test_stdin_to_stdout_with_ext_jpg(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png", size=(24, 20))
    proc = lnca_process("denoise", "-", "-m", tiny_weights, "--ext", "jpg", "--json",
                        stdin=(tmp_path / "a.png").read_bytes(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(JPEG_MAGIC) and proc.stdout.endswith(b"\xff\xd9")
    with Image.open(io.BytesIO(proc.stdout)) as image:
        assert image.format == "JPEG" and image.size == (24, 20)
    # with the image on stdout, the JSON line goes to stderr
    records = [json.loads(line) for line in proc.stderr.decode().splitlines() if line.startswith("{")]
    assert len(records) == 1 and records[0]["status"] == "done" and records[0]["size"] == [24, 20]


# ---------------------------------------------------------------- version, info, help


def test_version():
    result = lnca("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lnca {lnca_cli.__version__}"


def test_info_mentions_the_device():
    result = lnca("info")
    assert result.exit_code == 0, result.stderr
    assert "device:" in result.stdout
    assert str(devices.resolve_device("auto")) in result.stdout


def test_help_lists_the_commands():
    proc = lnca_process("--help")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for command in ("denoise", "deblur", "restore"):
        assert command in text


# ---------------------------------------------------------------- messages


def test_quiet_prints_nothing_on_success(photo, tiny_weights):
    result = lnca("denoise", photo, "-m", tiny_weights, "--quiet")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert photo.with_name("a_denoise.jpg").is_file()
    result = lnca("denoise", photo, "-m", tiny_weights, "-q")  # skipped: still silent
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def test_quiet_still_prints_failures(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    (tmp_path / "bad.jpg").write_text("nope")
    result = lnca("denoise", tmp_path, "-m", tiny_weights, "--quiet")
    assert result.exit_code == 1
    assert "bad.jpg" in result.stderr
    assert "a.png" not in result.stderr and "UNTRAINED" not in result.stderr


def test_untrained_model_warns(photo, tiny_weights):
    result = lnca("denoise", photo, "-m", tiny_weights)
    assert result.exit_code == 0
    assert "UNTRAINED" in result.stderr
    assert "UNTRAINED" not in result.stdout


def test_failure_message_names_a_file_with_brackets_verbatim(tmp_path, tiny_weights):
    (tmp_path / "[bold]x.jpg").write_text("not an image")
    result = lnca("denoise", tmp_path / "[bold]x.jpg", "-m", tiny_weights)
    assert result.exit_code == 1
    assert "failed" in result.stderr
    assert "[bold]x.jpg" in result.stderr.split("failed", 1)[1].splitlines()[0]


def test_settings_error_names_a_path_with_brackets_verbatim(photo, tmp_path):
    result = lnca("denoise", photo, "-m", tmp_path / "[bold]w.safetensors")
    assert result.exit_code == 2
    assert "[bold]w.safetensors" in result.stderr


def test_progress_line_names_a_file_with_colons_verbatim(tmp_path, tiny_weights):
    write_photo(tmp_path / "x:smile:.png")
    result = lnca("denoise", tmp_path / "x:smile:.png", "-m", tiny_weights)
    assert result.exit_code == 0
    assert "x:smile:.png" in result.stderr


# ---------------------------------------------------------------- image content


def test_grayscale_stays_grayscale(tmp_path, tiny_weights):
    write_photo(tmp_path / "g.png", size=(24, 20), mode="L")
    result = lnca("denoise", tmp_path / "g.png", "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "g_denoise.png") as image:
        assert image.mode == "L" and image.size == (24, 20)


def test_rgba_keeps_its_alpha_exactly(tmp_path, tiny_weights):
    write_photo(tmp_path / "t.png", size=(24, 20), mode="RGBA")
    result = lnca("denoise", tmp_path / "t.png", "-m", tiny_weights)
    assert result.exit_code == 0, result.stderr
    before, after = pixels(tmp_path / "t.png"), pixels(tmp_path / "t_denoise.png")
    assert after.shape == (20, 24, 4)
    np.testing.assert_array_equal(after[..., 3], before[..., 3])
    assert not np.array_equal(after[..., :3], before[..., :3])  # the colour did go through the model


def test_output_is_deterministic(tmp_path, sharp_weights):
    write_photo(tmp_path / "a.png")
    output = tmp_path / "a_denoise.png"
    assert lnca("denoise", tmp_path / "a.png", "-m", sharp_weights).exit_code == 0
    first = output.read_bytes()
    assert lnca("denoise", tmp_path / "a.png", "-m", sharp_weights, "--overwrite").exit_code == 0
    assert output.read_bytes() == first


@pytest.mark.parametrize("weights", ["tiny_weights", "sharp_weights"])
def test_tiled_output_equals_untiled(tmp_path, weights, request):
    model = request.getfixturevalue(weights)
    write_photo(tmp_path / "big.png", size=(100, 80))
    for tile in (0, 64):
        result = lnca("denoise", tmp_path / "big.png", "-m", model, "--tile", tile, "-o", tmp_path / f"t{tile}.png")
        assert result.exit_code == 0, result.stderr
    whole, tiled = pixels(tmp_path / "t0.png"), pixels(tmp_path / "t64.png")
    assert whole.shape == (80, 100, 3)
    assert np.abs(whole - tiled).max() <= 1


def test_tiling_comparison_would_see_a_short_halo(tmp_path, sharp_weights, monkeypatch):
    """Guards the test above: with the engine's halo cut to one cell, the CLI's tiled output differs."""
    write_photo(tmp_path / "big.png", size=(100, 80))
    assert lnca("denoise", tmp_path / "big.png", "-m", sharp_weights, "--tile", 0, "-o", tmp_path / "t0.png",
                "-q").exit_code == 0
    monkeypatch.setattr(LNCA, "halo", lambda self, steps: 1)
    assert lnca("denoise", tmp_path / "big.png", "-m", sharp_weights, "--tile", 64, "-o", tmp_path / "t64.png",
                "-q").exit_code == 0
    assert np.abs(pixels(tmp_path / "t0.png") - pixels(tmp_path / "t64.png")).max() > 1


def test_restored_pixels_match_the_library(tmp_path, sharp_weights):
    """The CLI writes what lnca_cli.restore computes (PNG is lossless)."""
    write_photo(tmp_path / "a.png")
    assert lnca("denoise", tmp_path / "a.png", "-m", sharp_weights).exit_code == 0
    image, _ = read_image(tmp_path / "a.png")
    model = lnca_cli.load_model(sharp_weights)
    expected = np.floor(lnca_cli.restore(image, model, device="cpu").numpy() * 255 + 0.5).clip(0, 255)
    written = pixels(tmp_path / "a_denoise.png").transpose(2, 0, 1)
    assert np.abs(written - expected).max() <= 1


def test_version_help_and_models_list_do_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from lnca_cli.cli import app\n"
            "for args in (['--version'], ['--help'], ['denoise', '--help'], ['models', 'list']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_info_says_what_auto_precision_and_threads_mean_here():
    result = lnca("info")
    assert f"precision: auto is {devices.resolve_precision(devices.resolve_device('auto'))}" in result.stdout
    assert "threads:" in result.stdout


@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal")
def test_an_image_is_never_written_to_a_terminal(photo, tiny_weights):
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "lnca_cli", "denoise", str(photo), "-o", "-", "-m", tiny_weights],
                              stdout=follower, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2
    assert b"refusing to write an image to the terminal" in proc.stderr
