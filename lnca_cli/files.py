"""Files that are never seen half-written: each is written to a temporary file beside it (locked while
in use, with a name that fits the file system), fsynced, given an ordinary file's permissions and
renamed into place; on any error the temporary file is removed. The temporary files that a killed
run left behind are lnca's to clean up. Images, weights, the registry and checkpoints all go
through atomic_write.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from typing import BinaryIO, Callable

try:
    import fcntl
except ImportError:  # Windows: temporary files are not locked, and stale ones are not cleaned up
    fcntl = None


NAME_MAX = 255  # bytes in a file name, on the usual file systems
_TEMP_SUFFIX = ".lnca.tmp"
_TEMP_NAME = re.compile(r"\..*\.[a-z0-9_]{8}" + re.escape(_TEMP_SUFFIX), re.DOTALL)  # what mkstemp makes below
_TEMP_EXTRA = len("..12345678" + _TEMP_SUFFIX)  # what a temporary name adds: two dots, 8 random characters


def _temporary_file(folder: str, name: str) -> tuple[int, str]:
    """A new temporary file `.NAME.XXXXXXXX.lnca.tmp` in folder, locked while this process has it open
    (remove_stale_temporary_files leaves it alone); NAME is cut short to keep within NAME_MAX."""
    prefix = "." + os.fsdecode(os.fsencode(name)[:NAME_MAX - _TEMP_EXTRA]) + "."
    while True:
        handle, temp_path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=_TEMP_SUFFIX)
        if fcntl is None:
            return handle, temp_path
        fcntl.flock(handle, fcntl.LOCK_EX)
        if os.fstat(handle).st_nlink:
            return handle, temp_path
        os.close(handle)  # a clean-up took it for stale between its creation and the lock: make another


def remove_stale_temporary_files(folder: str | os.PathLike) -> list[str]:
    """Remove lnca's temporary files (`.NAME.XXXXXXXX.lnca.tmp`) that a killed run left in folder; one
    that a running lnca holds (locked) is left alone. Returns the paths removed."""
    try:
        names = os.listdir(folder) if fcntl is not None else []
    except OSError:
        return []
    removed = []
    for name in filter(_TEMP_NAME.fullmatch, names):
        path = os.path.join(folder, name)
        try:
            handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(handle).st_mode):
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.remove(path)
                removed.append(path)
        except OSError:
            pass  # locked by a running lnca, or gone already
        finally:
            os.close(handle)
    return removed



def new_file_mode() -> int:
    """Permissions an ordinary new file gets; mkstemp would leave it at 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call write(file) on a temporary file beside path, then put it in place (see the module doc).
    Errors are raised as they come (OSError for the file system's)."""
    path = os.fspath(path)
    handle, temp_path = _temporary_file(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as file:
            os.chmod(temp_path, new_file_mode())
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise
