"""Rosie's error types. Each message says what is wrong, where, and how to fix it; the command line prints
it as one line (exit status 2) rather than a traceback."""


class RosieError(Exception):
    """Something the user can fix: a bad setting, a missing or damaged file, an unknown model."""


class ModelLoadError(RosieError):
    """The model folder is missing, incomplete or unreadable; the message says which and where."""


class ModelNotFound(RosieError):
    """The model folder or registry entry cannot be found or read."""
