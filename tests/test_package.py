"""The wheel users install carries the registry and the bundled weights (not only editable installs do)."""
import json
import subprocess
import sys
import zipfile

import pytest

from lnca_cli.hub import BUNDLED_DIRS, load_registry, sha256_of

pytest.importorskip("hatchling", reason="building the wheel offline needs hatchling (the [dev] extra)")


def test_wheel_carries_the_registry_and_every_bundled_weights_file(tmp_path):
    root = BUNDLED_DIRS[1].parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(root)], check=True)
    (wheel,) = tmp_path.glob("lnca-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        registry = json.loads(archive.read("lnca_cli/weights/models.json"))
        assert registry == json.loads((root / "weights" / "models.json").read_text())
        bundled = [e for e in load_registry().models.values() if (root / "weights" / e.filename).is_file()]
        for entry in bundled:
            packaged = tmp_path / entry.filename
            packaged.write_bytes(archive.read(f"lnca_cli/weights/{entry.filename}"))
            assert sha256_of(packaged) == entry.sha256
    assert "lnca_cli/cli/__init__.py" in names
    assert {registry["defaults"][task] for task in registry["defaults"]} <= {e.name for e in bundled}
