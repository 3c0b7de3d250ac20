"""The robustness suite: what lnca promises about bad files, bad settings, signals, full disks and memory.

The fixtures of tests/conftest.py (tiny random models) apply here too. The helpers below run the real
`lnca` as a process (signals, file-size limits, raw file names) and check what a run leaves behind.
"""
import os
import subprocess
import sys

from PIL import Image

LNCA = [sys.executable, "-m", "lnca_cli"]


def argv(*args) -> list:
    """The command line of `lnca ARGS` as a real process; bytes arguments stay bytes (raw file names)."""
    return [*LNCA, *(a if isinstance(a, bytes) else str(a) for a in args)]


def run_lnca(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """Run `lnca ARGS` to its end as a real process, capturing stdout and stderr as bytes."""
    return subprocess.run(argv(*args), capture_output=True, timeout=timeout, **kwargs)


def temp_files(folder) -> list[str]:
    """Temporary files of atomic writes (`.<name>.<random>.tmp`) left anywhere under folder."""
    return [str(p) for p in folder.rglob("*.tmp")]


def assert_complete_images(paths) -> None:
    """Every path is a whole, decodable image (a truncated one fails load())."""
    for path in paths:
        with Image.open(path) as image:
            image.load()


def failure_lines(stderr: str, name: str) -> list[str]:
    """The `failed ...` lines of a run that name a file (one per failure; the end summary repeats them)."""
    return [line for line in stderr.splitlines() if line.startswith("failed ") and name in line]


def assert_no_traceback(*streams) -> None:
    for stream in streams:
        text = stream.decode(errors="replace") if isinstance(stream, bytes) else stream
        assert "Traceback" not in text, text


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
