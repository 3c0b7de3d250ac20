"""The errors lnca raises for users: each carries the exit code the CLI ends with, and a message
that is one line written for people. No imports: the CLI can catch them before torch is loaded."""


class LncaError(Exception):
    """A problem the user can act on; the CLI prints its message as one line and exits with exit_code."""

    exit_code = 1


class SettingsError(LncaError, ValueError):
    """Bad usage or settings, found before any work starts (a ValueError too: a bad value)."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """A signal that stops lnca at once (a second SIGINT or SIGTERM, or one while an image streams to
    stdout); the CLI exits 128 + the signal's number, as a shell reports a process the signal killed."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal = signal_number
        self.exit_code = 128 + signal_number


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def printable(text: str) -> str:
    """text with every non-printable character escaped (a newline as \\n, ESC as \\x1b, a byte of a
    file name that is not UTF-8 as \\xe9), so that a message about a file stays one line and shows
    on a terminal as what it is."""
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]
