"""The errors lnca raises for users: each carries the exit code the CLI ends with, and a message
that is one line written for people. No imports: the CLI can catch them before torch is loaded."""


class LncaError(Exception):
    """A problem the user can act on; the CLI prints its message as one line and exits with exit_code."""

    exit_code = 1


class SettingsError(LncaError):
    """Bad usage or settings, found before any file is touched."""

    exit_code = 2
