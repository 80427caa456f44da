"""The catalog: every technique of the course material, one readable definition each, by name.

Each kind lives in one module with a table ``name -> entry`` (a factory, class or object)::

    >>> from dyntrace import catalog
    >>> catalog.kinds()
    ['activation', 'augmentation', 'dataset', 'dropout', 'function', 'init', 'model', 'norm', ...]
    >>> catalog.get("optimizer", "Adam")          # names are case-insensitive, '-' == '_'
    <function adam ...>

An unknown name raises :class:`~dyntrace.errors.UnknownNameError` with a did-you-mean and the
valid names. Modules are imported on first use, so ``import dyntrace.catalog.functions2d``
(which the plots use) never imports torch.
"""

import difflib
import inspect
from importlib import import_module

from dyntrace.errors import ConfigError, UnknownNameError

__all__ = ["ConfigError", "kinds", "names", "get", "summary", "lookup", "normalize"]

# kind -> (module, table attribute). The kind is the word used in error messages.
_KINDS = {
    "activation": ("dyntrace.catalog.activations", "ACTIVATIONS"),
    "augmentation": ("dyntrace.catalog.regularizers", "AUGMENTATIONS"),
    "dataset": ("dyntrace.catalog.datasets", "DATASETS"),
    "dropout": ("dyntrace.catalog.regularizers", "DROPOUTS"),
    "function": ("dyntrace.catalog.functions2d", "FUNCTIONS"),
    "init": ("dyntrace.catalog.inits", "INITS"),
    "model": ("dyntrace.catalog.models", "MODELS"),
    "norm": ("dyntrace.catalog.norms", "NORMS"),
    "optimizer": ("dyntrace.catalog.optimizers", "OPTIMIZERS"),
    "regularizer": ("dyntrace.catalog.regularizers", "REGULARIZERS"),
    "scaling": ("dyntrace.catalog.regularizers", "SCALERS"),
    "schedule": ("dyntrace.catalog.lr_schedules", "SCHEDULES"),
}


def normalize(name: str) -> str:
    """Canonical spelling of a catalog name: lower case, ``-`` and spaces become ``_``."""
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def lookup(kind: str, table: dict, name: str):
    """The entry of ``table`` called ``name`` (normalised), or UnknownNameError with a did-you-mean."""
    key = normalize(name)
    if key in table:
        return table[key]
    valid = sorted(table)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    raise UnknownNameError(f"unknown {kind} {name!r}{hint} valid: {', '.join(valid)}")


def _table(kind: str) -> dict:
    module, attr = lookup("kind", _KINDS, kind)
    return getattr(import_module(module), attr)


def kinds() -> list[str]:
    """The kinds of technique in the catalog, sorted."""
    return sorted(_KINDS)


def names(kind: str) -> list[str]:
    """The valid names of one kind (aliases included), sorted."""
    return sorted(_table(kind))


def get(kind: str, name: str):
    """The entry called ``name`` of ``kind``; raises UnknownNameError for an unknown kind or name."""
    return lookup(kind, _table(kind), name)


def summary(kind: str, name: str) -> str:
    """One line describing an entry: its ``description`` or its docstring's first paragraph."""
    entry = get(kind, name)
    text = getattr(entry, "description", None) or inspect.getdoc(entry) or ""
    return " ".join(text.strip().split("\n\n")[0].split())
