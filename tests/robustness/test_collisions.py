"""Nothing lost, whatever the folder holds: lnca replaces only files it wrote itself (they carry its
mark, not just its names), never writes two inputs to one output, and never writes outside -o."""
import json
import os

import pytest

from conftest import lnca, write_photo

from .conftest import failure_lines


def written_by_lnca(path) -> bool:
    from lnca_cli.images import written_by_lnca as marked  # (imported here: each test fails alone on old code)

    return marked(path)


def _records(result) -> dict[str, dict]:
    return {os.path.basename(r["input"]): r for r in map(json.loads, result.stdout.splitlines())}


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "--overwrite"])
def test_a_users_file_named_like_an_output_is_an_input_and_is_never_replaced(tmp_path, tiny_weights, flags):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "photo.jpg")
    write_photo(folder / "photo_denoise.jpg", seed=1)  # the user's own file, not lnca's
    original = (folder / "photo_denoise.jpg").read_bytes()
    result = lnca("denoise", folder, "-m", tiny_weights, "--json", *flags)
    assert result.exit_code == 1, result.stderr
    records = _records(result)
    assert records["photo_denoise.jpg"]["status"] == "done"  # an input like any other
    assert records["photo.jpg"]["status"] == "failed" and "overwrite an input" in records["photo.jpg"]["error"]
    assert (folder / "photo_denoise.jpg").read_bytes() == original
    assert written_by_lnca(folder / "photo_denoise_denoise.jpg")


def test_an_existing_file_lnca_did_not_write_is_kept_unless_named_with_overwrite(tmp_path, tiny_weights):
    write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    write_photo(out / "a_denoise.png", seed=1)
    original = (out / "a_denoise.png").read_bytes()
    for flags in ([], ["--overwrite"]):
        result = lnca("denoise", tmp_path / "a.png", "-m", tiny_weights, "-o", out, *flags)
        assert result.exit_code == 1, result.stderr
        (line,) = failure_lines(result.stderr, "lnca did not write it")
        assert line.split(None, 1)[1].startswith(f"{tmp_path / 'a.png'}: output {out / 'a_denoise.png'} exists")
        assert (out / "a_denoise.png").read_bytes() == original
    named = lnca("denoise", tmp_path / "a.png", "-m", tiny_weights, "-o", out / "a_denoise.png")
    assert named.exit_code == 1 and "--overwrite replaces it" in named.stderr
    assert (out / "a_denoise.png").read_bytes() == original
    named = lnca("denoise", tmp_path / "a.png", "-m", tiny_weights, "-o", out / "a_denoise.png", "--overwrite")
    assert named.exit_code == 0, named.stderr
    assert written_by_lnca(out / "a_denoise.png")


@pytest.mark.parametrize("ext", ["jpg", "png", "tif", "webp"])
def test_earlier_outputs_are_known_by_their_mark_in_every_format(tmp_path, tiny_weights, ext):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / f"a.{ext}")
    assert lnca("denoise", folder, "-m", tiny_weights, "--steps", "1").exit_code == 0
    output = folder / f"a_denoise.{ext}"
    earlier = output.read_bytes()
    assert written_by_lnca(output) and not written_by_lnca(folder / f"a.{ext}")
    result = lnca("denoise", folder, "-m", tiny_weights, "--overwrite", "--json")
    assert result.exit_code == 0, result.stderr
    assert list(_records(result)) == [f"a.{ext}"]  # the earlier output is not an input
    assert output.read_bytes() != earlier and sorted(os.listdir(folder)) == [f"a.{ext}", f"a_denoise.{ext}"]


@pytest.mark.parametrize("names, flags", [
    (["a.jpg", "a.png"], ["--ext", "png"]),
    (["d1/x.jpg", "d2/x.jpg"], ["-o", "out"]),
], ids=["one stem, two extensions", "one name in two folders"])
def test_two_inputs_with_one_output_are_refused_before_any_work(tmp_path, tiny_weights, names, flags):
    for seed, name in enumerate(names):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write_photo(tmp_path / name, seed=seed)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    flags = [str(tmp_path / flag) if flag == "out" else flag for flag in flags]
    result = lnca("denoise", *(tmp_path / name for name in names), "-m", tiny_weights, *flags)
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "1 output would be written from more than one input" in line
    assert all(str(tmp_path / name) in line for name in names)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("suffix", ["a/b", "x/../../ESCAPED"])
def test_a_suffix_with_a_slash_is_refused_and_nothing_lands_outside_the_output_folder(tmp_path, tiny_weights,
                                                                                       suffix):
    write_photo(tmp_path / "photo.png")
    result = lnca("denoise", tmp_path / "photo.png", "-m", tiny_weights, "-o", tmp_path / "a" / "out",
                  "--suffix", suffix)
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--suffix" in line and "'/'" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["photo.png", "tiny.safetensors"]


TRAIN = ["--preset", "paper", "--crop", "16", "--batch", "2", "--ae-iterations", "1", "--nca-iterations", "1",
         "--device", "cpu"]


def test_train_out_never_replaces_a_photo(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        write_photo(photos / f"{i}.png", size=(32, 32), seed=i)
    write_photo(tmp_path / "holiday.jpg")
    originals = {p: p.read_bytes() for p in [*photos.iterdir(), tmp_path / "holiday.jpg"]}
    inside = lnca("train", "--data", photos, "--out", photos / "0.png", "--overwrite", *TRAIN)
    assert inside.exit_code == 2 and "is inside --data" in inside.stderr
    other = lnca("train", "--data", photos, "--out", tmp_path / "holiday.jpg", *TRAIN)
    assert other.exit_code == 2 and "is not an lnca weights file; --overwrite replaces it" in other.stderr
    assert {p: p.read_bytes() for p in originals} == originals


def test_the_python_apis_restore_file_keeps_an_input_reached_through_a_link(tmp_path, tiny_model):
    from lnca_cli.api import Job, RestoreSettings, backend_for, restore_file

    write_photo(tmp_path / "a.png")
    write_photo(tmp_path / "b.png", seed=1)
    os.symlink(tmp_path / "b.png", tmp_path / "link.png")
    original = (tmp_path / "b.png").read_bytes()
    settings = RestoreSettings()
    backend = backend_for(tiny_model, settings)  # opened once, for every file below
    failed = restore_file(Job(str(tmp_path / "a.png"), str(tmp_path / "link.png"), named=True), tiny_model,
                          RestoreSettings(overwrite=True), input_paths=[str(tmp_path / "b.png")], backend=backend)
    assert failed.status == "failed" and "overwrite an input" in failed.error
    assert (tmp_path / "b.png").read_bytes() == original
    done = restore_file(Job(str(tmp_path / "a.png"), str(tmp_path / "out.png")), tiny_model, settings, backend=backend)
    assert done.status == "done" and written_by_lnca(tmp_path / "out.png")
