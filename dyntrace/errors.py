"""User-facing errors. The CLI turns each into one line on stderr and a non-zero exit."""

__all__ = [
    "DyntraceError",
    "RunFileError",
    "SchemaVersionError",
    "RunFileBusyError",
    "MissingDataError",
    "UnknownNameError",
    "ConfigError",
]


class DyntraceError(Exception):
    """Base class of every error dyntrace raises on purpose."""


class RunFileError(DyntraceError):
    """A path that is not a readable dyntrace run file (missing, not HDF5, truncated, foreign)."""


class SchemaVersionError(RunFileError):
    """A run file written by a newer dyntrace than this one can read."""


class RunFileBusyError(RunFileError):
    """A run file another writer holds (one writer per path, across processes)."""


class MissingDataError(DyntraceError):
    """A run lacks a series a figure or analysis needs; the message names the probe that records it."""


class UnknownNameError(DyntraceError, KeyError):
    """An unknown catalog, probe or figure name; the message lists the valid names."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(DyntraceError, ValueError):
    """A hyperparameter or option outside its valid range; the message names it and its value."""
