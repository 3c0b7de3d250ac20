"""Memory: a batch does not grow from file to file, and a large image goes through tiles no larger
than the tile budget (its side plus the halo on each side)."""
import os

import pytest
from PIL import Image

import lnca_cli.api as api
from conftest import TINY, lnca, random_model, write_photo
from lnca_cli.api import Job, RestoreSettings, restore_files
from lnca_cli.engine import CPU_TILE
from lnca_cli.model import LNCA

MB = 1024 * 1024


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _growth_over_a_batch(tmp_path, files: int = 40) -> int:
    """Resident memory after restoring `files` 256 x 256 images, less what it was after a warm-up."""
    write_photo(tmp_path / "in.png", size=(256, 256))
    model, settings = random_model(), RestoreSettings(device="cpu")

    def batch(name: str, count: int) -> None:
        jobs = [Job(str(tmp_path / "in.png"), str(tmp_path / name / f"{i}.png")) for i in range(count)]
        results = restore_files(jobs, model, settings)
        assert {r.status for r in results} == {"done"}

    batch("warm-up", 10)
    before = _resident_bytes()
    batch("batch", files)
    return _resident_bytes() - before


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc (Linux)")
def test_memory_stays_flat_over_a_batch(tmp_path):
    assert _growth_over_a_batch(tmp_path) < 12 * MB


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc (Linux)")
def test_memory_measurement_would_see_a_leak(tmp_path, monkeypatch):
    """Guards the test above: keeping each input image (0.8 MB as floats) shows as growth."""
    kept, read_image = [], api.read_image
    monkeypatch.setattr(api, "read_image", lambda *args: kept.append(read_image(*args)) or kept[-1])
    assert _growth_over_a_batch(tmp_path) > 24 * MB


@pytest.mark.parametrize("tile, size", [("64", (300, 200)), ("auto", (CPU_TILE + 100, 24))])
def test_large_image_goes_through_tiles_within_the_budget(tmp_path, tiny_weights, monkeypatch, tile, size):
    windows, restore_padded = [], LNCA.restore_padded

    def spy(self, pixels, *args, **kwargs):
        windows.append(tuple(pixels.shape[-2:]))
        return restore_padded(self, pixels, *args, **kwargs)

    monkeypatch.setattr(LNCA, "restore_padded", spy)
    write_photo(tmp_path / "large.png", size=size)
    result = lnca("denoise", tmp_path / "large.png", "-m", tiny_weights, "--tile", tile, "-q")
    assert result.exit_code == 0, result.stderr
    core = CPU_TILE if tile == "auto" else int(tile)
    budget = core + 2 * LNCA(TINY).halo(TINY.steps) * TINY.downsample
    assert len(windows) > 1 and max(max(w) for w in windows) <= budget
    with Image.open(tmp_path / "large_denoise.png") as image:
        assert image.size == size
