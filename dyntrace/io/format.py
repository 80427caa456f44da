"""The dyntrace run file, schema version 1: every name and layout rule lives here.

Both the writer and the reader use this module; nothing else touches HDF5 names. The
written specification is ``docs/format.md``. Layout::

    /                         attrs: format, schema_version, versions, created, config (JSON),
                                     model, optimizer, schedule, probes (JSON)
    /closed                   int8 [1]: 1 once the recorder closed the file cleanly
    /scalars/names            str [K]          scalar names; a row's key indexes this
    /scalars/step             int64 [n]        one row per logged value (an event log)
    /scalars/key              int32 [n]
    /scalars/value            float64 [n]
    /probes/<probe>/names     str [T]          the probe's tensors (columns)
    /probes/<probe>/step      int64 [R]        record steps of this probe
    /probes/<probe>/<field>   [R, T, *shape]   per-record fields (attrs: unit, reduce, …)
    /probes/<probe>/<field>   [T, *shape]      static fields (bin edges, unit counts)
    /probes/<probe>/<label>   str [T]          static string columns (e.g. module kind)
    /trajectory/...           optional flat parameter snapshots [R', D]
    /landscape/<name>/...     slices, Li et al. names: xcoordinates, ycoordinates, train_loss

All datasets exist before SWMR writing starts (SWMR cannot create objects), so a reader
that opens the file mid-run sees a consistent, growing prefix.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from dyntrace.errors import RunFileError, SchemaVersionError

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "create",
    "append_scalars",
    "append_records",
    "write_static",
    "append_trajectory",
    "mark_closed",
    "write_landscape",
    "read_landscape",
    "landscape_names",
    "open_validated",
    "decode",
    "decode_attrs",
]

FORMAT_NAME = "dyntrace-run"
SCHEMA_VERSION = 1

SCALARS = "scalars"
PROBES = "probes"
TRAJECTORY = "trajectory"
LANDSCAPE = "landscape"
CLOSED = "closed"

_STR = h5py.string_dtype("utf-8")
# Scalar names grow during a run: fixed-length, because variable-length strings live in the
# global heap, which SWMR does not keep consistent for readers.
SCALAR_NAME_BYTES = 256
_NAME = h5py.string_dtype("utf-8", SCALAR_NAME_BYTES)
_COMPRESSION = dict(compression="gzip", compression_opts=1, shuffle=True)
_CHUNK_BYTES = 1 << 18
# A SWMR writer never reuses the file space of a rewritten chunk, and appending to a
# compressed chunk rewrites it. Small chunks bound that waste per flush; the writer also
# batches everything between two flushes into one write per dataset.
_RECORD_CHUNK_ROWS = 16
_LOG_CHUNK_ROWS = 1024


def _rows_per_chunk(row_bytes: int, max_rows: int) -> int:
    return int(max(1, min(max_rows, _CHUNK_BYTES // max(1, row_bytes))))


def _growable(group, name, dtype, row_shape=(), *, max_rows=_RECORD_CHUNK_ROWS, **attrs):
    dtype = np.dtype(dtype)
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    ds = group.create_dataset(
        name,
        shape=(0, *row_shape),
        maxshape=(None, *row_shape),
        chunks=(_rows_per_chunk(row_bytes, max_rows), *row_shape),
        dtype=dtype,
        **_COMPRESSION,
    )
    for key, value in attrs.items():
        ds.attrs[key] = value
    return ds


def create(path: str, meta: dict, layouts: dict, *, trajectory: dict | None = None) -> h5py.File:
    """Create a run file with every dataset it will hold, then switch to SWMR writing.

    ``meta`` holds root attributes (JSON-encoded where not a string); ``layouts`` maps probe
    name to :class:`dyntrace.summaries.ProbeLayout`; ``trajectory`` (optional) has
    ``names``, ``shapes``, ``dtype`` of the flat parameter vector kept at a stride.
    """
    f = h5py.File(path, "w", libver="latest")
    try:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in meta.items():
            f.attrs[key] = str(value) if isinstance(value, str) else json.dumps(value, default=str)
        f.create_dataset(CLOSED, data=np.zeros(1, dtype=np.int8))

        scalars = f.create_group(SCALARS)
        scalars.attrs["description"] = "event log: one row per logged scalar value"
        _growable(scalars, "names", _NAME, max_rows=64, description="scalar names, indexed by key")
        _growable(scalars, "step", "int64", max_rows=_LOG_CHUNK_ROWS, unit="optimizer steps")
        _growable(scalars, "key", "int32", max_rows=_LOG_CHUNK_ROWS, description="index into names")
        _growable(scalars, "value", "float64", max_rows=_LOG_CHUNK_ROWS)

        probes = f.create_group(PROBES)
        for probe_name, layout in layouts.items():
            group = probes.create_group(probe_name)
            for key, value in layout.attrs.items():
                group.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
            group.create_dataset("names", data=np.array(layout.names, dtype=object), dtype=_STR)
            for label, values in layout.labels.items():
                group.create_dataset(label, data=np.array(values, dtype=object), dtype=_STR)
            _growable(group, "step", "int64", unit="optimizer steps")
            n = len(layout.names)
            for spec in layout.fields:
                attrs = dict(unit=spec.unit, description=spec.description, reduce=spec.reduce, columns="names")
                if spec.static:
                    fill = np.nan if np.dtype(spec.dtype).kind == "f" else 0
                    ds = group.create_dataset(spec.name, data=np.full((n, *spec.shape), fill, dtype=spec.dtype))
                    for key, value in attrs.items():
                        ds.attrs[key] = value
                    ds.attrs["static"] = True
                else:
                    _growable(group, spec.name, spec.dtype, (n, *spec.shape), **attrs)

        if trajectory is not None:
            group = f.create_group(TRAJECTORY)
            group.attrs["description"] = "flattened parameters (named_parameters order) at a stride"
            group.create_dataset("names", data=np.array(trajectory["names"], dtype=object), dtype=_STR)
            group.create_dataset("sizes", data=np.asarray(trajectory["sizes"], dtype=np.int64))
            _growable(group, "step", "int64", unit="optimizer steps")
            _growable(group, "params", trajectory["dtype"], (int(sum(trajectory["sizes"])),))
        f.swmr_mode = True
    except Exception:
        f.close()
        raise
    return f


def _append(ds, rows: np.ndarray):
    start = ds.shape[0]
    ds.resize((start + rows.shape[0], *ds.shape[1:]))
    ds[start:] = rows


def append_scalars(f: h5py.File, new_names: list[str], steps, keys, values):
    """Append scalar events; ``new_names`` extend the names table first."""
    group = f[SCALARS]
    if new_names:
        names = group["names"]
        _append(names, np.array([n.encode() for n in new_names], dtype=names.dtype))  # same charset: UTF-8
    _append(group["step"], np.asarray(steps, dtype=np.int64))
    _append(group["key"], np.asarray(keys, dtype=np.int32))
    _append(group["value"], np.asarray(values, dtype=np.float64))


def append_records(f: h5py.File, probe: str, steps, fields: dict):
    """Append records of ``probe``: ``fields`` maps a field to an array [n, T, *shape]."""
    group = f[PROBES][probe]
    for name, rows in fields.items():
        ds = group[name]
        _append(ds, np.asarray(rows, dtype=ds.dtype))
    # The step goes last: a reader takes len(step) as the number of complete records.
    _append(group["step"], np.asarray(steps, dtype=np.int64))


def write_static(f: h5py.File, probe: str, fields: dict):
    """Fill static fields (bin edges, unit counts) of ``probe``."""
    group = f[PROBES][probe]
    for name, array in fields.items():
        group[name][...] = np.asarray(array, dtype=group[name].dtype)


def append_trajectory(f: h5py.File, steps, flat: np.ndarray):
    """Append parameter snapshots: ``flat`` is [n, D] for the n ``steps``."""
    group = f[TRAJECTORY]
    _append(group["params"], np.asarray(flat, dtype=group["params"].dtype))
    _append(group["step"], np.asarray(steps, dtype=np.int64))


def mark_closed(f: h5py.File):
    f[CLOSED][0] = 1


def write_landscape(path, name: str, arrays: dict, attrs: dict):
    """Add (or replace) ``/landscape/<name>`` in a closed run file.

    ``arrays`` use Li et al.'s names (``xcoordinates``, ``ycoordinates``, ``train_loss``
    [ny, nx], ``train_acc``) plus any others (``path``, ``explained_variance``…); ``attrs``
    (kind, seed, normalisation, ignore, step, …) are stored JSON-encoded where not scalars.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"Invalid landscape name: {name!r} (a non-empty name without '/')")
    with h5py.File(os.fspath(path), "a", libver="latest") as f:
        _check_root(os.fspath(path), f)
        parent = f.require_group(LANDSCAPE)
        if name in parent:
            del parent[name]
        group = parent.create_group(name)
        for key, values in arrays.items():
            if values is not None:
                group.create_dataset(key, data=np.asarray(values), **_COMPRESSION)
        for key, value in attrs.items():
            if value is None:  # absent rather than a "null" string
                continue
            group.attrs[key] = value if isinstance(value, (int, float, str, bool, np.number)) else json.dumps(value, default=str)


def landscape_names(f: h5py.File) -> list[str]:
    return list(f[LANDSCAPE]) if LANDSCAPE in f else []


def read_landscape(f: h5py.File, name: str) -> tuple[dict, dict]:
    """(arrays, attrs) of ``/landscape/<name>``; JSON attributes decoded."""
    group = f[LANDSCAPE][name]
    return {key: group[key][()] for key in group}, decode_attrs(group.attrs)


def decode_attrs(attrs) -> dict:
    """HDF5 attributes as Python values: bytes decoded, JSON-encoded values parsed."""
    out = {}
    for key, value in attrs.items():
        value = value.decode() if isinstance(value, bytes) else value
        if isinstance(value, str) and value[:1] in '[{"-0123456789':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def decode(values) -> list[str]:
    """Stored strings (bytes or str) as a list of str."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def open_validated(path: str, *, swmr: bool = True) -> h5py.File:
    """Open a run file read-only after checking that it is a whole dyntrace file we can read.

    A plain open runs first: HDF5 then checks the end of file, so a truncated file fails at
    once, whereas a SWMR open skips that check and may retry damaged metadata for a long
    time. Only a file that passes is reopened in SWMR mode (a consistent prefix of a file
    still being written).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise RunFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise RunFileError(f"{path}: is a directory, not a run file")
    if not h5py.is_hdf5(path):
        raise RunFileError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            _check_root(path, f)
    except RunFileError:
        raise
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise RunFileError(f"{path}: damaged or truncated HDF5 file ({_first_line(exc)})") from None
        # A killed SWMR writer leaves its open-for-write flag, which SWMR readers ignore; but a
        # SWMR open skips the end-of-file check, so make that check here first.
        _check_not_truncated(path)
        swmr = True
    try:
        f = h5py.File(path, "r", swmr=swmr, libver="latest") if swmr else h5py.File(path, "r")
        _check_root(path, f)
    except RunFileError:
        raise
    except OSError as exc:
        raise RunFileError(f"{path}: cannot be read ({_first_line(exc)})") from None
    return f


def _check_not_truncated(path: str):
    """Compare the end-of-file address stored in the superblock (version 2/3) with the size."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    signature = b"\x89HDF\r\n\x1a\n"
    if not head.startswith(signature) or len(head) < 12 or head[8] not in (2, 3):
        raise RunFileError(f"{path}: damaged HDF5 file (unexpected superblock)")
    offset_size = head[9]
    start = 12 + 2 * offset_size  # signature, version, sizes, flags, base and extension addresses
    stored_eof = int.from_bytes(head[start : start + offset_size], "little")
    actual = os.path.getsize(path)
    if actual < stored_eof:
        raise RunFileError(f"{path}: truncated file ({actual} of {stored_eof} bytes)")


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_root(path: str, f: h5py.File):
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT_NAME:
        raise RunFileError(f"{path}: an HDF5 file, but not a dyntrace run (no format={FORMAT_NAME!r} attribute)")
    version = int(f.attrs.get("schema_version", -1))
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: schema version {version} is newer than this dyntrace reads ({SCHEMA_VERSION}); upgrade dyntrace"
        )
    if version < 1:
        raise RunFileError(f"{path}: invalid schema version {version}")
