"""The dyntrace run file, schema version 1: every name and layout rule lives here.

Both the writer and the reader use this module; nothing else touches HDF5 names. The
written specification is ``docs/format.md``. Layout::

    /                         attrs: format, schema_version, versions, created, config (JSON),
                                     model, optimizer, schedule, probes (JSON), checksums (JSON)
    /closed                   int8 [1]: 0 being written (or killed), 1 closed, 2 closed after
                                        a write failure stopped the recording
    /committed                int64 [G] (attr tables): rows of each growing table a reader
                                        may trust; advanced only after those rows are flushed
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

Damage is detected, never read as data: every dataset carries HDF5's Fletcher-32 checksum
filter, strings are fixed-length (no global heap), and the root attribute ``checksums``
holds a CRC-32 of the structure and attributes of every object. Reading starts with
:func:`open_validated`, which checks the whole structure the reader touches in a plain
(non-SWMR) open before the file is opened for reading; :func:`read_rows` checks the rows a
snapshot will use (committed counts, row counts, step order, scalar keys, declared sizes).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field

import h5py
import numpy as np

from dyntrace import stats
from dyntrace.errors import DyntraceError, RunFileBusyError, RunFileError, SchemaVersionError
from dyntrace.io import hdf5
from dyntrace.io.lock import WriteLock

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "CLOSED_OPEN",
    "CLOSED_CLEANLY",
    "CLOSED_STOPPED",
    "create",
    "append_scalars",
    "append_records",
    "append_trajectory",
    "write_static",
    "commit",
    "mark_closed",
    "write_landscape",
    "read_landscape",
    "landscape_names",
    "open_validated",
    "read_rows",
    "verify",
    "Layout",
    "Rows",
    "decode",
    "decode_attrs",
    "reading",
]

FORMAT_NAME = "dyntrace-run"
SCHEMA_VERSION = 1

SCALARS = "scalars"
PROBES = "probes"
TRAJECTORY = "trajectory"
LANDSCAPE = "landscape"
CLOSED = "closed"
COMMITTED = "committed"
CHECKSUMS = "checksums"
SCALAR_NAMES_TABLE = "scalars/names"

CLOSED_OPEN, CLOSED_CLEANLY, CLOSED_STOPPED = 0, 1, 2

_STR = h5py.string_dtype("utf-8")
# Scalar names grow during a run: fixed-length, because variable-length strings live in the
# global heap, which SWMR does not keep consistent for readers (and which has no checksum).
SCALAR_NAME_BYTES = 256
_NAME = h5py.string_dtype("utf-8", SCALAR_NAME_BYTES)
_CHECKED = dict(fletcher32=True)  # HDF5's per-chunk checksum: a damaged chunk fails to read
_COMPRESSION = dict(compression="gzip", compression_opts=1, shuffle=True, **_CHECKED)
_CHUNK_BYTES = 1 << 18
# A SWMR writer never reuses the file space of a rewritten chunk, and appending to a
# compressed chunk rewrites it. Small chunks bound that waste per flush; the writer also
# batches everything between two flushes into one write per dataset.
_RECORD_CHUNK_ROWS = 16
_LOG_CHUNK_ROWS = 1024
# Deflate cannot compress more than about 1032 : 1, so no dataset can hold more bytes than
# this many times the size of the file (plus a chunk's worth): a larger declared size is damage.
_MAX_RATIO = 1100
_SLACK_BYTES = 1 << 20
_MAX_ATTR_BYTES = 64 << 20


# =============================================================================================
# Writing
# =============================================================================================


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
        _set_attr(ds, key, value)
    return ds


def _fixed(group, name, data, dtype=None, **attrs):
    """A dataset written once (or filled at the first record), chunked so it carries a checksum."""
    data = np.asarray(data, dtype=dtype)
    row_bytes = int(np.prod(data.shape[1:], dtype=np.int64)) * data.dtype.itemsize
    chunks = (_rows_per_chunk(row_bytes, max(1, data.shape[0])), *data.shape[1:])
    ds = group.create_dataset(name, data=data, chunks=chunks, **_CHECKED)
    for key, value in attrs.items():
        _set_attr(ds, key, value)
    return ds


def _strings(group, name, values, **attrs):
    """A column of strings: fixed-length UTF-8 (stored in the dataset, under its checksum)."""
    encoded = [str(v).encode("utf-8", "surrogateescape") for v in values]
    width = max([1, *map(len, encoded)])
    return _fixed(
        group, name, np.array(encoded, dtype=f"S{width}"), dtype=h5py.string_dtype("utf-8", width), **attrs
    )


def _set_attr(obj, key: str, value) -> None:
    """Strings as fixed-length UTF-8 (in the object header, not the global heap); numbers as
    they are; anything else as JSON."""
    if isinstance(value, (bool, np.bool_)):
        obj.attrs[key] = bool(value)
        return
    if isinstance(value, (int, float, np.number)):
        obj.attrs[key] = value
        return
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    encoded = text.encode("utf-8", "surrogateescape")
    obj.attrs.create(
        key,
        np.array(encoded, dtype=f"S{max(1, len(encoded))}"),
        dtype=h5py.string_dtype("utf-8", max(1, len(encoded))),
    )


def create(path: str, meta: dict, layouts: dict, *, trajectory: dict | None = None) -> h5py.File:
    """Create a run file with every dataset it will hold, then switch to SWMR writing.

    ``meta`` holds root attributes (JSON-encoded where not a string); ``layouts`` maps probe
    name to :class:`dyntrace.summaries.ProbeLayout`; ``trajectory`` (optional) has
    ``names``, ``sizes``, ``dtype`` of the flat parameter vector kept at a stride. A probe
    with no tensors (a model without parameters) and an empty trajectory get no group: there
    is nothing to record for them.
    """
    try:
        # no chunk cache: a write goes to the file in its own call (a failure is an exception there,
        # not in a handle's __dealloc__ later); the writer appends a batch per dataset anyway
        f = h5py.File(path, "w", libver="latest", rdcc_nbytes=0)
    except OSError as exc:
        if "unable to lock file" in str(exc):
            raise RunFileBusyError(
                f"{path}: another process has it open (its HDF5 file lock is held); "
                "close that reader or write elsewhere"
            ) from None
        raise
    try:
        _set_attr(f, "format", FORMAT_NAME)
        f.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in meta.items():
            _set_attr(f, key, value if isinstance(value, str) else json.dumps(value, default=str))
        _fixed(f, CLOSED, np.zeros(1, dtype=np.int8))
        tables = [SCALARS, SCALAR_NAMES_TABLE]

        scalars = f.create_group(SCALARS)
        _set_attr(scalars, "description", "event log: one row per logged scalar value")
        _growable(scalars, "names", _NAME, max_rows=64, description="scalar names, indexed by key")
        _growable(scalars, "step", "int64", max_rows=_LOG_CHUNK_ROWS, unit="optimizer steps")
        _growable(scalars, "key", "int32", max_rows=_LOG_CHUNK_ROWS, description="index into names")
        _growable(scalars, "value", "float64", max_rows=_LOG_CHUNK_ROWS)

        probes = f.create_group(PROBES)
        for probe_name, layout in layouts.items():
            if not layout.names:
                continue
            group = probes.create_group(probe_name)
            tables.append(f"{PROBES}/{probe_name}")
            for key, value in layout.attrs.items():
                _set_attr(group, key, value)
            _strings(group, "names", layout.names)
            for label, values in layout.labels.items():
                _strings(group, label, values)
            _growable(group, "step", "int64", unit="optimizer steps")
            n = len(layout.names)
            for spec in layout.fields:
                attrs = dict(
                    unit=spec.unit, description=spec.description, reduce=spec.reduce, columns="names"
                )
                if spec.static:
                    fill = np.nan if np.dtype(spec.dtype).kind == "f" else 0
                    _fixed(
                        group,
                        spec.name,
                        np.full((n, *spec.shape), fill, dtype=spec.dtype),
                        **attrs,
                        static=True,
                    )
                else:
                    _growable(group, spec.name, spec.dtype, (n, *spec.shape), **attrs)

        if trajectory is not None and trajectory["names"] and int(sum(trajectory["sizes"])) > 0:
            group = f.create_group(TRAJECTORY)
            tables.append(TRAJECTORY)
            _set_attr(group, "description", "flattened parameters (named_parameters order) at a stride")
            _strings(group, "names", trajectory["names"])
            _fixed(group, "sizes", np.asarray(trajectory["sizes"], dtype=np.int64))
            _growable(group, "step", "int64", unit="optimizer steps")
            _growable(group, "params", trajectory["dtype"], (int(sum(trajectory["sizes"])),))

        _fixed(
            f,
            COMMITTED,
            np.zeros(len(tables), dtype=np.int64),
            tables=json.dumps(tables),
            description="rows of each table a reader may trust",
        )
        _set_attr(f, CHECKSUMS, json.dumps(_checksums(f, _object_paths(f))))
        f.swmr_mode = True
    except Exception:
        f.close()
        raise
    return f


def _append(ds, rows: np.ndarray) -> int:
    start = ds.shape[0]
    ds.resize((start + rows.shape[0], *ds.shape[1:]))
    ds[start:] = rows
    return start + rows.shape[0]


def append_scalars(
    f: h5py.File, new_names: list[str], steps, keys, values, *, commit_rows: bool = True
) -> dict:
    """Append scalar events; ``new_names`` extend the names table first. Returns the new row
    counts ``{table: rows}``; with ``commit_rows`` they are committed at once (see :func:`commit`)."""
    group = f[SCALARS]
    rows = {}
    if new_names:
        names = group["names"]
        rows[SCALAR_NAMES_TABLE] = _append(
            names, np.array([n.encode() for n in new_names], dtype=names.dtype)
        )
    _append(group["value"], np.asarray(values, dtype=np.float64))
    _append(group["key"], np.asarray(keys, dtype=np.int32))
    rows[SCALARS] = _append(group["step"], np.asarray(steps, dtype=np.int64))
    if commit_rows:
        commit(f, rows)
    return rows


def append_records(f: h5py.File, probe: str, steps, fields: dict, *, commit_rows: bool = True) -> dict:
    """Append records of ``probe``: ``fields`` maps a field to an array [n, T, *shape]."""
    group = f[PROBES][probe]
    for name, rows in fields.items():
        ds = group[name]
        _append(ds, np.asarray(rows, dtype=ds.dtype))
    rows = {f"{PROBES}/{probe}": _append(group["step"], np.asarray(steps, dtype=np.int64))}
    if commit_rows:
        commit(f, rows)
    return rows


def append_trajectory(f: h5py.File, steps, flat: np.ndarray, *, commit_rows: bool = True) -> dict:
    """Append parameter snapshots: ``flat`` is [n, D] for the n ``steps``."""
    group = f[TRAJECTORY]
    _append(group["params"], np.asarray(flat, dtype=group["params"].dtype))
    rows = {TRAJECTORY: _append(group["step"], np.asarray(steps, dtype=np.int64))}
    if commit_rows:
        commit(f, rows)
    return rows


def write_static(f: h5py.File, probe: str, fields: dict):
    """Fill static fields (bin edges, unit counts) of ``probe``."""
    group = f[PROBES][probe]
    for name, array in fields.items():
        group[name][...] = np.asarray(array, dtype=group[name].dtype)


def commit(f: h5py.File, rows: dict) -> None:
    """Make ``rows`` (``{table: row count}``) of growing tables visible to readers.

    A reader reads no more rows of a table than committed, so rows written but not yet
    committed (a write that failed half-way, a full disk) are never read. The writer commits
    only after the rows themselves are flushed, and flushes again after committing.
    """
    if COMMITTED not in f:
        return
    ds = f[COMMITTED]
    tables = json.loads(_text(ds.attrs["tables"]))
    counts = ds[:]
    for table, n in rows.items():
        counts[tables.index(table)] = n
    ds[:] = counts


def mark_closed(f: h5py.File, status: int = CLOSED_CLEANLY):
    """Set ``/closed``: 1 after a clean close, 2 when a write failure stopped the recording."""
    f[CLOSED][0] = status


def write_landscape(path, name: str, arrays: dict, attrs: dict):
    """Add (or replace) ``/landscape/<name>`` in a closed run file.

    ``arrays`` use Li et al.'s names (``xcoordinates``, ``ycoordinates``, ``train_loss``
    [ny, nx], ``train_acc``) plus any others (``path``, ``explained_variance``…); ``attrs``
    (kind, seed, normalisation, ignore, step, …) are stored JSON-encoded where not scalars.
    The file is validated first and its write lock held meanwhile.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"Invalid landscape name: {name!r} (a non-empty name without '/')")
    path = os.fspath(path)
    with WriteLock(path):
        handle, _ = open_validated(path)
        handle.close()
        with h5py.File(path, "a", libver="latest") as f:
            _check_root(path, f)
            parent = f.require_group(LANDSCAPE)
            if name in parent:
                del parent[name]
            group = parent.create_group(name)
            for key, values in arrays.items():
                if values is not None:
                    values = np.asarray(values)
                    if values.ndim and values.size:  # chunked: compressed, under a checksum
                        group.create_dataset(key, data=values, chunks=True, **_COMPRESSION)
                    else:
                        group.create_dataset(key, data=values)
            for key, value in attrs.items():
                if value is None:  # absent rather than a "null" string
                    continue
                _set_attr(
                    f[LANDSCAPE][name],
                    key,
                    value
                    if isinstance(value, (int, float, str, bool, np.number))
                    else json.dumps(value, default=str),
                )
            stored = None
            if CHECKSUMS in f.attrs:  # the objects that changed: the root, /landscape and the new slice
                stored = json.loads(_text(f.attrs[CHECKSUMS]))
                stored = {
                    k: v
                    for k, v in stored.items()
                    if not k.startswith(f"/{LANDSCAPE}/{name}/") and k != f"/{LANDSCAPE}/{name}"
                }
                changed = [
                    "/",
                    f"/{LANDSCAPE}",
                    f"/{LANDSCAPE}/{name}",
                    *(f"/{LANDSCAPE}/{name}/{k}" for k in group),
                ]
                stored.update(_checksums(f, changed))  # (the root's leaves its checksums out)
                del f.attrs[CHECKSUMS]
        if stored is not None:
            # Written in a second opening: HDF5 2.0 fails to close a file in which an attribute
            # of an object with many (dense storage) was replaced by a longer one ("Can't
            # decrement id ref count (Pinned entry count not decreasing)"), here at the fifth slice.
            with h5py.File(path, "a", libver="latest") as f:
                _set_attr(f, CHECKSUMS, json.dumps(stored))


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
        if key == CHECKSUMS:
            continue
        value = _text(value) if isinstance(value, (bytes, np.bytes_)) else value
        if isinstance(value, str) and value[:1] in '[{"-0123456789':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def decode(values) -> list[str]:
    """Stored strings (bytes or str) as a list of str."""
    return [_text(v) if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


# =============================================================================================
# Checksums of structure and attributes
# =============================================================================================


def _object_paths(f: h5py.File) -> list[str]:
    paths = ["/"]
    f.visit(lambda name: paths.append(f"/{name}"))
    return paths


def _checksums(f: h5py.File, paths) -> dict:
    return {path: _crc(f[path], root=path == "/") for path in paths}


@dataclass(frozen=True)
class _Header:
    """What a dataset header says, read once: type, extent, growability, chunking, checksum filter."""

    dtype: np.dtype
    shape: tuple | None
    maxshape: tuple | None
    chunks: tuple | None
    fletcher32: bool

    @property
    def growing(self) -> bool:
        return bool(self.shape) and self.maxshape is not None and self.maxshape[0] is None

    @classmethod
    def of(cls, ds) -> "_Header":
        space = ds.id.get_space()
        shape = space.shape
        maxshape = space.get_simple_extent_dims(True) if shape is not None else None
        if maxshape is not None:
            maxshape = tuple(None if m == h5py.h5s.UNLIMITED else m for m in maxshape)
        dcpl = ds.id.get_create_plist()
        chunks = dcpl.get_chunk() if dcpl.get_layout() == h5py.h5d.CHUNKED else None
        filters = {dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())}
        return cls(ds.id.dtype, shape, maxshape, chunks, h5py.h5z.FILTER_FLETCHER32 in filters)


def _crc(
    obj,
    *,
    root: bool = False,
    attrs: dict | None = None,
    header: _Header | None = None,
    members: list | None = None,
) -> str:
    """CRC-32 of what an object is: group members or dataset type, rank, fixed shape, chunking
    and checksum filter; and every attribute, name and value. Growing lengths are left out."""
    if attrs is None:
        attrs = _read_attrs(obj)
    if isinstance(obj, h5py.Group):
        head = f"group|{'|'.join(sorted(obj.keys() if members is None else members))}"
    else:
        h = header or _Header.of(obj)
        ndim = len(h.shape) if h.shape is not None else -1
        shape = (h.shape[1:] if h.growing else h.shape) or ()
        head = (
            f"dataset|{_kind(h.dtype)}|{ndim}|{h.growing}|{list(shape)}|{list(h.chunks or ())}|{h.fletcher32}"
        )
    crc = zlib.crc32(head.encode())
    for key in sorted(attrs):
        if root and key == CHECKSUMS:
            continue
        crc = zlib.crc32(_canonical(key, attrs[key]), crc)
    return f"{crc:08x}"


def _kind(dtype) -> str:
    info = h5py.check_string_dtype(dtype)
    if info is not None:
        return f"str{info.length or ''}"
    return f"{dtype.kind}{dtype.itemsize}"


def _canonical(key: str, value) -> bytes:
    """An attribute as bytes that do not depend on how h5py or numpy present it."""
    if isinstance(value, (bytes, np.bytes_, str)):  # fixed or variable length: the text
        return f"|{key}|s|{_text(value)}".encode("utf-8", "surrogateescape")
    array = np.asarray(value)
    if array.dtype.kind in "SUO":
        items = [
            v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
            for v in array.reshape(-1).tolist()
        ]
        return f"|{key}|S|{list(array.shape)}|{items}".encode("utf-8", "surrogateescape")
    head = f"|{key}|{_kind(array.dtype)}|{list(array.shape)}|".encode()
    return head + array.astype(array.dtype.newbyteorder("<")).tobytes()


# =============================================================================================
# Reading: validation of the structure, then the rows of a snapshot
# =============================================================================================


@contextmanager
def reading(path: str, what: str):
    """Turn whatever h5py, numpy or json raise while reading ``what`` into one RunFileError."""
    try:
        yield
    except DyntraceError:
        raise
    except (
        OSError,
        RuntimeError,
        KeyError,
        ValueError,
        TypeError,
        IndexError,
        MemoryError,
        OverflowError,
        UnicodeError,
    ) as exc:
        raise RunFileError(f"{path}: damaged file: {what}: {_first_line(exc)}") from None


@dataclass
class Field:
    """One dataset of a probe: per-record ([R, T, *shape]) or static ([T, *shape])."""

    static: bool
    ndim: int
    shape: tuple  # per-record: the row shape (T, *shape); static: the whole shape


@dataclass
class Probe:
    names: list[str]
    fields: dict[str, Field]
    labels: dict[str, list[str]]
    attrs: dict
    stats: dict = field(default_factory=dict)  # name -> dyntrace.stats.Ratio the probe declared


@dataclass
class Layout:
    """What a validated file holds (fixed for the life of the file: SWMR cannot add objects)."""

    path: str
    meta: dict
    probes: dict[str, Probe]
    trajectory: dict | None  # names, sizes, dim
    landscapes: list[str]
    tables: list[str] | None  # committed tables; None for files written before /committed
    open_for_write: bool  # the superblock says a writer has it open (or was killed)
    checksummed: bool
    file_size: int
    notes: list[str] = field(default_factory=list)


@dataclass
class Rows:
    """The rows of one snapshot, checked: what a reader may use."""

    closed: int
    probe_steps: dict[str, np.ndarray]
    scalar_names: list[str]
    scalar_step: np.ndarray
    scalar_key: np.ndarray
    scalar_value: np.ndarray
    trajectory_steps: np.ndarray | None
    notes: list[str]


def open_validated(path) -> tuple[h5py.File, Layout]:
    """Open a run file read-only after checking everything the reader will touch.

    In order: the path (exists, a file, readable), the HDF5 signature, the superblock's
    checksum and end-of-file address against the file's size, then, in a plain (non-SWMR)
    open, the whole structure: root attributes, every group, dataset header, attribute and
    declared size the reader uses, and the stored checksums. A file no writer has open is
    then read through that plain handle; one a writer has open (or a killed writer left open)
    is reopened in SWMR mode with bounded metadata read attempts. Every failure is one
    :class:`RunFileError` naming the file.
    """
    path = os.fspath(path)
    size = _check_path(path)
    try:
        block = hdf5.superblock(path)
    except hdf5.SuperblockError as exc:
        raise RunFileError(f"{path}: damaged HDF5 file ({exc})") from None
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if block is not None and size < block.eof:
        raise RunFileError(f"{path}: truncated file ({size} of {block.eof} bytes)")
    live = block is not None and block.open_for_write
    # A writer that is still running may be rewriting a block while we read it: a plain read
    # then fails, a moment later it succeeds. A killed writer's or a damaged file fails again.
    attempts = 3 if live else 1
    for attempt in range(attempts):
        f = _plain(path, block)
        try:
            layout = _validate(path, f, size, live)
        except RunFileError:
            f.close()
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
            continue
        except BaseException:
            f.close()
            raise
        if not live:
            return f, layout  # nobody writes it: read it through the validated plain handle
        f.close()
        break
    try:
        f = hdf5.open_swmr(path)
    except OSError as exc:
        raise RunFileError(f"{path}: cannot be read ({_first_line(exc)})") from None
    return f, layout


def _check_path(path: str) -> int:
    if not os.path.exists(path):
        raise RunFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise RunFileError(f"{path}: is a directory, not a run file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        size = os.path.getsize(path)
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise RunFileError(f"{path}: not an HDF5 file (empty)")
    if head != hdf5.SIGNATURE:  # HDF5 also looks at 512, 1024, … (a user block)
        try:
            ok = h5py.is_hdf5(path)
        except Exception:  # noqa: BLE001  (whatever it raises, the answer is "no")
            ok = False
        if not ok:
            raise RunFileError(f"{path}: not an HDF5 file")
    return size


def _plain(path: str, block) -> h5py.File:
    try:
        return hdf5.open_plain(path, block)
    except OSError as exc:
        text = str(exc)
        if "unable to lock file" in text:
            raise RunFileError(
                f"{path}: another process is modifying it (its HDF5 file lock is held)"
            ) from None
        if "truncated file" in text:
            raise RunFileError(f"{path}: truncated file ({_first_line(exc)})") from None
        raise RunFileError(f"{path}: damaged or truncated HDF5 file ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001  (the superblock view: anything it raises is damage)
        raise RunFileError(f"{path}: damaged HDF5 file ({_first_line(exc)})") from None


def _validate(path: str, f: h5py.File, size: int, live: bool) -> Layout:
    with reading(path, "root attributes"):
        raw, stored = _root_identity(path, f, size)
    checks = _Walk(path, f, size, stored)
    checks.group("/", required=(CLOSED, SCALARS, PROBES), optional=(COMMITTED, TRAJECTORY, LANDSCAPE))
    with reading(path, "the group structure"):  # every link index, also the parts a lookup by name skips
        f.visit(_ignore)
    with reading(path, "root attributes"):
        meta = _root_meta(path, raw)  # after the root's checksum: damage is reported as damage

    closed = checks.dataset(f"/{CLOSED}", kinds="iu", ndim=1)
    if closed.shape != (1,):
        raise RunFileError(f"{path}: /{CLOSED} has shape {closed.shape} (expected (1,))")
    tables = None
    if COMMITTED in f:
        committed = checks.dataset(f"/{COMMITTED}", kinds="iu", ndim=1)
        with reading(path, f"/{COMMITTED} tables"):
            tables = json.loads(_text(_read_attr(committed, "tables", size)))
        if not (
            isinstance(tables, list)
            and all(isinstance(t, str) for t in tables)
            and len(tables) == committed.shape[0]
        ):
            raise RunFileError(f"{path}: /{COMMITTED} has tables {tables!r} for {committed.shape[0]} counts")

    checks.group(f"/{SCALARS}", required=("names", "step", "key", "value"))
    checks.dataset(f"/{SCALARS}/names", kinds="S", ndim=1, growing=True)
    checks.dataset(f"/{SCALARS}/step", kinds="iu", ndim=1, growing=True)
    checks.dataset(f"/{SCALARS}/key", kinds="iu", ndim=1, growing=True)
    checks.dataset(f"/{SCALARS}/value", kinds="fiu", ndim=1, growing=True)

    probes = {}
    for name in checks.group(f"/{PROBES}"):
        probes[name] = checks.probe(name)

    trajectory = None
    if TRAJECTORY in f:
        trajectory = checks.trajectory()

    landscapes = []
    if LANDSCAPE in f:
        for name in checks.group(f"/{LANDSCAPE}"):
            checks.landscape(name)
            landscapes.append(name)

    if tables is not None:
        expected = [
            SCALARS,
            SCALAR_NAMES_TABLE,
            *(f"{PROBES}/{p}" for p in probes),
            *([TRAJECTORY] if trajectory else []),
        ]
        if sorted(tables) != sorted(expected):
            raise RunFileError(
                f"{path}: /{COMMITTED} counts {', '.join(tables)}; the file holds {', '.join(expected)}"
            )
    if stored is not None:
        missing = sorted(set(stored) - checks.seen)
        if missing:
            raise RunFileError(
                f"{path}: damaged file: {missing[0]} is missing (the stored checksums list it)"
            )
    return Layout(
        path=path,
        meta=meta,
        probes=probes,
        trajectory=trajectory,
        landscapes=landscapes,
        tables=tables,
        open_for_write=live,
        checksummed=stored is not None,
        file_size=size,
    )


def _ignore(name):
    return None


# Root attributes the reader interprets, by type (others are read, not interpreted).
_JSON_ATTRS = {"config": dict, "optimizer": dict, "probes": list, "distributed": dict}
_TEXT_ATTRS = (
    "created",
    "model",
    "model_class",
    "schedule",
    "device",
    "platform",
    "dyntrace_version",
    "torch_version",
    "python_version",
    "numpy_version",
)


def _root_identity(path: str, f: h5py.File, size: int) -> tuple[dict, dict | None]:
    """The root attributes, checked for what makes the file a run this reader reads: the
    format name, the schema version, the stored checksums (if any)."""
    raw = _read_attrs(f, size)
    fmt = raw.get("format")
    if not isinstance(fmt, (str, bytes, np.bytes_)) or _text(fmt) != FORMAT_NAME:
        raise RunFileError(
            f"{path}: an HDF5 file, but not a dyntrace run (no format={FORMAT_NAME!r} attribute)"
        )
    version = raw.get("schema_version")
    if isinstance(version, np.ndarray) and version.shape == ():
        version = version[()]
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)):
        raise RunFileError(f"{path}: invalid schema version {_show(version)} (expected an integer)")
    version = int(version)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: schema version {version} is newer than this dyntrace reads ({SCHEMA_VERSION}); upgrade dyntrace"
        )
    if version < 1:
        raise RunFileError(f"{path}: invalid schema version {version}")
    stored = None
    if CHECKSUMS in raw:
        try:
            stored = json.loads(_text(raw[CHECKSUMS]))
        except (ValueError, TypeError):
            stored = None
        if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
            raise RunFileError(f"{path}: damaged file: the {CHECKSUMS} attribute is not a table of checksums")
    return raw, stored


def _root_meta(path: str, raw: dict) -> dict:
    """The root attributes as the run's metadata, each one the reader interprets of its type."""
    meta = decode_attrs(raw)
    for key, kind in _JSON_ATTRS.items():
        if key in raw:
            try:
                value = json.loads(_text(raw[key]))
            except (ValueError, TypeError):
                raise RunFileError(f"{path}: the {key} attribute is not valid JSON") from None
            if not isinstance(value, kind):
                raise RunFileError(
                    f"{path}: the {key} attribute is {type(value).__name__} (expected a JSON {kind.__name__})"
                )
            meta[key] = value
    for key in _TEXT_ATTRS:
        if key in raw and not isinstance(raw[key], (str, bytes, np.bytes_)):
            raise RunFileError(f"{path}: the {key} attribute is {_show(raw[key])} (expected text)")
    if "n_parameters" in meta and (
        isinstance(meta["n_parameters"], bool) or not isinstance(meta["n_parameters"], int)
    ):
        raise RunFileError(
            f"{path}: the n_parameters attribute is {_show(meta['n_parameters'])} (expected an integer)"
        )
    return meta


def _read_attr(obj, key: str, size: int | None = None):
    """One attribute, its declared size checked before it is read (a damaged header may
    declare terabytes)."""
    return _attr_value(obj, key, h5py.h5a.open(obj.id, key.encode()), size)


def _read_attrs(obj, size: int | None = None) -> dict:
    """Every attribute of ``obj`` (opened by index: one open each), sizes checked first."""
    out = {}
    for i in range(h5py.h5a.get_num_attrs(obj.id)):
        attr = h5py.h5a.open(obj.id, index=i)
        key = attr.name.decode("utf-8", "surrogateescape")
        out[key] = _attr_value(obj, key, attr, size)
    return out


def _attr_value(obj, key, attr, size):
    """Numbers and fixed-length strings straight from the open attribute; anything else
    (variable-length strings of older files, compound types) through h5py."""
    shape, dtype = attr.shape, attr.dtype
    if size is not None:
        count = int(np.prod(shape, dtype=np.float64)) if shape else 1
        nbytes = count * dtype.itemsize
        if nbytes > min(_MAX_ATTR_BYTES, size + 4096):
            raise RunFileError(f"attribute {key!r} declares {nbytes} bytes in a file of {size}")
    if shape is not None and dtype.kind in "iufbS" and dtype.names is None and dtype.subdtype is None:
        value = np.empty(shape, dtype=dtype)
        if value.size:
            attr.read(value)
    else:
        value = obj.attrs[key]
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind not in "O":
        value = value[()]
    return value


_RECORD_FIELDS_INT = {
    "count",
    "zero",
    "nonfinite",
    "hist_count",
    "saturated",
    "dead",
    "dead_persistent",
    "hist",
}


class _Walk:
    """The structural checks, one object at a time; ``seen`` collects the paths checked."""

    def __init__(self, path: str, f: h5py.File, size: int, stored: dict | None):
        self.path, self.f, self.size, self.stored = path, f, size, stored
        self.seen: set[str] = set()
        self.objects: dict[str, object] = {"/": f}  # path -> its h5py object, opened once
        self.attrs: dict[str, dict] = {}  # path -> its attributes, read once
        self.headers: dict[str, _Header] = {}
        self.members: dict[str, list[str]] = {}

    def _get(self, where: str, kind):
        if where in self.seen:
            return self.objects[where]
        parent, _, name = where.rpartition("/")
        with reading(self.path, where):
            if where != "/":
                group = self.objects.get(parent or "/")
                if group is None:
                    group = self.f[parent or "/"]
                link = group.get(name, getlink=True)
                if link is None:
                    raise RunFileError(f"{self.path}: no {where} (not a complete run file)")
                if not isinstance(link, h5py.HardLink):
                    raise RunFileError(
                        f"{self.path}: damaged file: {where} is a {type(link).__name__}, not an object"
                    )
                obj = group[name]
            else:
                obj = self.f
            if not isinstance(obj, kind):
                expected = "group" if kind is h5py.Group else "dataset"
                raise RunFileError(f"{self.path}: damaged file: {where} is not a {expected}")
            attrs = self.attrs[where] = _read_attrs(obj, self.size)
            header = self.headers[where] = _Header.of(obj) if kind is h5py.Dataset else None
            members = self.members[where] = list(obj.keys()) if kind is h5py.Group else None
            if self.stored is not None:
                if where not in self.stored:
                    raise RunFileError(f"{self.path}: damaged file: {where} is not in the stored checksums")
                if (
                    _crc(obj, root=where == "/", attrs=attrs, header=header, members=members)
                    != self.stored[where]
                ):
                    raise RunFileError(
                        f"{self.path}: damaged file: the structure or attributes of {where} "
                        "do not match their stored checksum"
                    )
        self.seen.add(where)
        self.objects[where] = obj
        return obj

    def group(self, where: str, required=(), optional=None) -> list[str]:
        """Check a group and its links; ``optional`` None allows any other members."""
        self._get(where, h5py.Group)
        members = self.members[where]
        for name in required:
            if name not in members:
                raise RunFileError(f"{self.path}: no {where.rstrip('/')}/{name} (not a complete run file)")
        if optional is not None:
            for name in members:
                if name not in required and name not in optional and self.stored is not None:
                    raise RunFileError(f"{self.path}: damaged file: unexpected {where.rstrip('/')}/{name}")
        return members

    def dataset(
        self, where: str, *, kinds: str, ndim: int | None = None, growing: bool | None = None, min_ndim=None
    ):
        ds = self._get(where, h5py.Dataset)
        h = self.headers[where]
        dtype, shape = h.dtype, h.shape
        kind = "S" if h5py.check_string_dtype(dtype) is not None else dtype.kind
        if dtype.names is not None or kind not in kinds:
            raise RunFileError(
                f"{self.path}: {where} has type {dtype} (expected {_KIND_NAMES.get(kinds, kinds)})"
            )
        if (
            shape is None
            or (ndim is not None and len(shape) != ndim)
            or (min_ndim is not None and len(shape) < min_ndim)
        ):
            raise RunFileError(
                f"{self.path}: {where} has shape {shape} (expected {ndim or min_ndim} dimensions)"
            )
        if growing is not None and growing != h.growing:
            raise RunFileError(
                f"{self.path}: {where} is {'' if h.growing else 'not '}growable (the format says otherwise)"
            )
        if not h.growing:  # read whole: its declared size must fit in the file
            nbytes = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if nbytes > _MAX_RATIO * self.size + _SLACK_BYTES:
                raise RunFileError(
                    f"{self.path}: damaged file: {where} declares {shape} ({nbytes:.3g} bytes) "
                    f"in a file of {self.size} bytes"
                )
        return ds

    def strings(self, where: str, count: int | None = None) -> list[str]:
        ds = self.dataset(where, kinds="S", ndim=1, growing=False)
        with reading(self.path, where):
            values = decode(ds[()])
        if count is not None and len(values) != count:
            raise RunFileError(f"{self.path}: {where} has {len(values)} entries for {count} tensors")
        return values

    def probe(self, name: str) -> Probe:
        where = f"/{PROBES}/{name}"
        members = self.group(where, required=("names", "step"))
        with reading(self.path, f"{where} attributes"):
            attrs = decode_attrs(self.attrs[where])
        if attrs.get("hist_scale", "value") not in ("value", "log10_abs"):
            raise RunFileError(
                f"{self.path}: {where} has hist_scale {attrs['hist_scale']!r} (value or log10_abs)"
            )
        if attrs.get("nonfinite_scope", "sample") not in ("sample", "tensor"):
            raise RunFileError(
                f"{self.path}: {where} has nonfinite_scope {attrs['nonfinite_scope']!r} (sample or tensor)"
            )
        names = self.strings(f"{where}/names")
        if not names:
            raise RunFileError(f"{self.path}: {where}/names is empty")
        if len(set(names)) != len(names):
            raise RunFileError(f"{self.path}: {where}/names repeats a name")
        self.dataset(f"{where}/step", kinds="iu", ndim=1, growing=True)
        fields, labels = {}, {}
        for member in members:
            if member in ("names", "step"):
                continue
            path = f"{where}/{member}"
            ds = self._get(path, h5py.Dataset)
            with reading(self.path, path):
                is_string = h5py.check_string_dtype(ds.dtype) is not None
                static = self.attrs[path].get("static", False)
                if not isinstance(static, (bool, np.bool_)):
                    raise RunFileError(f"{self.path}: {path} has static = {_show(static)} (true or false)")
            if is_string:
                labels[member] = self.strings(path, len(names))
                continue
            kinds = "iu" if member in _RECORD_FIELDS_INT else "fiu"
            if static:
                self.dataset(path, kinds=kinds, min_ndim=1, growing=False)
                shape = self.headers[path].shape
                if shape[0] != len(names):
                    raise RunFileError(f"{self.path}: {path} has {shape[0]} rows for {len(names)} tensors")
                fields[member] = Field(static=True, ndim=len(shape), shape=tuple(shape))
            else:
                self.dataset(path, kinds=kinds, min_ndim=2, growing=True)
                shape = self.headers[path].shape
                if shape[1] != len(names):
                    raise RunFileError(f"{self.path}: {path} has {shape[1]} columns for {len(names)} tensors")
                fields[member] = Field(static=False, ndim=len(shape), shape=tuple(shape[1:]))
        if "hist" in fields and "edges" in fields:
            bins, edges = fields["hist"].shape[-1], fields["edges"].shape[-1]
            if fields["hist"].ndim != 3 or fields["edges"].ndim != 2 or bins != edges + 1:
                raise RunFileError(
                    f"{self.path}: {where}: hist has {bins} bins and edges {edges} edges "
                    "(expected one more bin than edges: the under- and overflow)"
                )
        return Probe(
            names=names, fields=fields, labels=labels, attrs=attrs, stats=self._stats(where, fields, attrs)
        )

    def _stats(self, where: str, fields: dict, attrs: dict) -> dict:
        """The statistics a probe declared (its ``stats`` attribute), each built from fields it
        has of one value per tensor."""
        try:
            table = (
                stats.decode(attrs["stats"])
                if "stats" in attrs
                else stats.declared_before_stats(fields, attrs)
            )
        except (ValueError, TypeError) as exc:
            raise RunFileError(f"{self.path}: {where} has a bad stats attribute: {exc}") from None
        for ratio in table.values():
            for name in ratio.fields():
                info = fields.get(name)
                if info is None or info.ndim != (1 if info.static else 2):
                    raise RunFileError(
                        f"{self.path}: {where}: statistic {ratio.name!r} needs a field {name!r} "
                        "of one value per tensor"
                    )
        return table

    def trajectory(self) -> dict:
        where = f"/{TRAJECTORY}"
        self.group(where, required=("names", "sizes", "step", "params"), optional=())
        names = self.strings(f"{where}/names")
        sizes_ds = self.dataset(f"{where}/sizes", kinds="iu", ndim=1, growing=False)
        with reading(self.path, f"{where}/sizes"):
            sizes = sizes_ds[()].astype(np.int64)
        if len(sizes) != len(names) or (sizes < 0).any():
            raise RunFileError(f"{self.path}: {where}/sizes does not describe the {len(names)} parameters")
        self.dataset(f"{where}/step", kinds="iu", ndim=1, growing=True)
        self.dataset(f"{where}/params", kinds="f", ndim=2, growing=True)
        dim = self.headers[f"{where}/params"].shape[1]
        if dim != int(sizes.sum()):
            raise RunFileError(
                f"{self.path}: {where}/params holds {dim} values a row; sizes add up to {int(sizes.sum())}"
            )
        return {"names": names, "sizes": sizes, "dim": int(dim)}

    def landscape(self, name: str) -> None:
        where = f"/{LANDSCAPE}/{name}"
        members = self.group(where, required=("xcoordinates", "train_loss"))
        for member in members:
            self.dataset(f"{where}/{member}", kinds="fiub", growing=False)
        shape = {member: self.headers[f"{where}/{member}"].shape for member in members}
        x, loss = shape["xcoordinates"], shape["train_loss"]
        expected = x if len(x) == 1 else None
        if "ycoordinates" in members:
            y = shape["ycoordinates"]
            expected = (y[0], x[0]) if len(x) == 1 and len(y) == 1 else None
        if expected is None or loss != expected:
            raise RunFileError(f"{self.path}: {where}/train_loss has shape {loss} for its coordinates")
        if "train_acc" in members and shape["train_acc"] != loss:
            raise RunFileError(
                f"{self.path}: {where}/train_acc has shape {shape['train_acc']}, train_loss {loss}"
            )
        path = [m for m in ("proj_xcoord", "proj_ycoord", "proj_steps") if m in members]
        if path and (len(path) < 2 or len({shape[m] for m in path}) != 1 or len(shape[path[0]]) != 1):
            raise RunFileError(f"{self.path}: {where}: the projected path's columns do not agree")
        if "explained_variance" in members and shape["explained_variance"] != (2,):
            raise RunFileError(
                f"{self.path}: {where}/explained_variance has shape {shape['explained_variance']} (expected (2,))"
            )


_KIND_NAMES = {"iu": "integers", "fiu": "numbers", "f": "floats", "S": "strings", "fiub": "numbers"}


def _show(value) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_rows(f: h5py.File, layout: Layout) -> Rows:
    """Read and check the rows of a snapshot: committed counts against stored rows, record
    steps strictly increasing, scalar steps never decreasing, scalar keys naming a stored
    name, declared sizes within what the file can hold.

    A file with committed counts that breaks a rule is damaged (RunFileError). A file written
    before committed counts existed may end in rows a killed or failing writer left half
    written: it is read up to the first bad row, and a note says so.
    """
    rows = _RowReader(f, layout)
    closed = rows.closed()
    probe_steps = {probe: rows.probe_steps(probe, spec) for probe, spec in layout.probes.items()}
    scalar_names, step, key, value = rows.scalars()
    trajectory_steps = rows.trajectory_steps() if layout.trajectory is not None else None
    if closed == CLOSED_STOPPED:
        rows.notes.append(
            "the recording stopped early: a write failed (a full disk?); the file holds what was written before"
        )
    return Rows(
        closed=closed,
        probe_steps=probe_steps,
        scalar_names=scalar_names,
        scalar_step=step,
        scalar_key=key,
        scalar_value=value,
        trajectory_steps=trajectory_steps,
        notes=rows.notes,
    )


class _RowReader:
    """The steps of :func:`read_rows`, one table at a time, against the committed counts."""

    def __init__(self, f: h5py.File, layout: Layout):
        self.f, self.path, self.notes = f, layout.path, []
        self.size = max(layout.file_size, _file_size(self.path))
        self.committed = None
        if layout.tables is not None:
            with reading(self.path, f"/{COMMITTED}"):
                counts = self.refreshed(f"/{COMMITTED}")[()]
            if (counts < 0).any():
                raise RunFileError(f"{self.path}: damaged file: /{COMMITTED} holds a negative count")
            self.committed = dict(zip(layout.tables, (int(c) for c in counts)))

    def refreshed(self, where):
        ds = self.f[where]
        ds.refresh()
        return ds

    def too_big(self, nbytes) -> bool:
        return nbytes > _MAX_RATIO * self.size + _SLACK_BYTES

    def closed(self) -> int:
        with reading(self.path, f"/{CLOSED}"):
            closed = int(self.refreshed(f"/{CLOSED}")[()][0])
        if closed not in (CLOSED_OPEN, CLOSED_CLEANLY, CLOSED_STOPPED):
            raise RunFileError(f"{self.path}: /{CLOSED} is {closed} (expected 0, 1 or 2)")
        return closed

    def table_rows(self, table: str, columns: dict) -> int:
        """Rows of a table (committed, or, for older files, its ``step`` column) after checking
        every column holds them and that their declared size fits in the file."""
        path, committed, lengths = self.path, self.committed, {}
        for name, where in columns.items():
            with reading(path, where):
                ds = self.refreshed(where)
                lengths[name] = (ds.shape[0], int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
        rows = committed[table] if committed is not None else lengths["step"][0]
        for name, (length, row_bytes) in lengths.items():
            if length < rows:
                raise RunFileError(
                    f"{path}: /{table}: {name} has {length} rows, {'committed' if committed else 'step'} {rows}"
                )
            if self.too_big(rows * row_bytes):
                raise RunFileError(
                    f"{path}: damaged file: /{table}/{name} declares {rows} rows of {row_bytes} bytes "
                    f"in a file of {self.size} bytes"
                )
        return rows

    def steps(self, table: str, rows: int, *, low: int, rule: str) -> np.ndarray:
        """A table's ``step`` column: strictly increasing from ``low``, cut at the first bad row."""
        where = f"/{table}/step"
        with reading(self.path, where):
            steps = self.f[where][:rows].astype(np.int64)
        bad = _first_bad(steps, strict=True, low=low)
        if bad is not None:
            steps = _cut(self.path, self.notes, self.committed, where, steps, bad, rule)
        return steps

    def probe_steps(self, probe: str, spec) -> np.ndarray:
        table = f"{PROBES}/{probe}"
        columns = {
            "step": f"/{table}/step",
            **{k: f"/{table}/{k}" for k, v in spec.fields.items() if not v.static},
        }
        return self.steps(
            table, self.table_rows(table, columns), low=1, rule="record steps must increase from 1"
        )

    def scalar_names(self) -> list[str]:
        path, where = self.path, f"/{SCALARS}/names"
        with reading(path, where):
            names_ds = self.refreshed(where)
            n_names = self.committed[SCALAR_NAMES_TABLE] if self.committed is not None else names_ds.shape[0]
            if n_names > names_ds.shape[0]:
                raise RunFileError(f"{path}: {where} has {names_ds.shape[0]} rows, committed {n_names}")
            if self.too_big(n_names * names_ds.dtype.itemsize):
                raise RunFileError(f"{path}: damaged file: {where} declares {n_names} names")
            names = decode(names_ds[:n_names])
        if "" in names or len(set(names)) != len(names):
            raise RunFileError(f"{path}: {where} holds an empty or repeated name")
        return names

    def scalars(self):
        """(names, step, key, value) of the scalar log, cut before a row that breaks a rule."""
        path, f = self.path, self.f
        names = self.scalar_names()
        rows = self.table_rows(SCALARS, {c: f"/{SCALARS}/{c}" for c in ("step", "key", "value")})
        if self.committed is None:  # older files: the three columns were appended one after the other
            with reading(path, f"/{SCALARS}"):
                rows = min(rows, *(f[f"/{SCALARS}/{c}"].shape[0] for c in ("key", "value")))
        with reading(path, f"/{SCALARS}"):
            step = f[f"/{SCALARS}/step"][:rows].astype(np.int64)
            key = f[f"/{SCALARS}/key"][:rows].astype(np.int64)
            value = f[f"/{SCALARS}/value"][:rows].astype(np.float64)
        # (no order among scalar steps: values logged with reduce= under torch.distributed are
        # written at the next record step, after later steps' values)
        bad = _first_bad(step, strict=None, low=0)
        outside = np.flatnonzero((key < 0) | (key >= len(names)))
        if outside.size and (bad is None or outside[0] < bad):
            if self.committed is not None:
                raise RunFileError(
                    f"{path}: damaged file: /{SCALARS}/key {int(key[outside[0]])} at row {int(outside[0])} "
                    f"names no scalar ({len(names)} names)"
                )
            bad = int(outside[0])
        if bad is not None:
            step = _cut(
                path,
                self.notes,
                self.committed,
                f"/{SCALARS}",
                step,
                bad,
                "scalar steps are not negative, keys name a scalar",
            )
            key, value = key[: len(step)], value[: len(step)]
        return names, step, key, value

    def trajectory_steps(self) -> np.ndarray:
        rows = self.table_rows(TRAJECTORY, {"step": f"/{TRAJECTORY}/step", "params": f"/{TRAJECTORY}/params"})
        return self.steps(TRAJECTORY, rows, low=0, rule="trajectory steps must increase from 0")


def verify(f: h5py.File, layout: Layout, rows: Rows) -> None:
    """Check every stored chunk a reader may use (the committed rows of every table, every
    static field and landscape) against its Fletcher-32 checksum, so that a damaged chunk
    anywhere is a RunFileError now, not an error in one figure or in none.

    The checksums are computed on the stored (compressed) bytes, read straight from the file:
    no decompression, about 1.5 s a GB. Datasets without the checksum filter (files written
    before it) are read through h5py instead (zlib checks what it decompresses).
    """
    path = layout.path
    targets = []  # (dataset path, rows to check or None for all)
    for probe, spec in layout.probes.items():
        n = len(rows.probe_steps[probe])
        targets += [
            (f"/{PROBES}/{probe}/{name}", None if info.static else n) for name, info in spec.fields.items()
        ]
    if layout.trajectory is not None:
        targets.append((f"/{TRAJECTORY}/params", len(rows.trajectory_steps)))
    for name in layout.landscapes:
        with reading(path, f"/{LANDSCAPE}/{name}"):
            targets += [(f"/{LANDSCAPE}/{name}/{member}", None) for member in f[f"/{LANDSCAPE}/{name}"]]
    with open(path, "rb", buffering=0) as raw:
        for where, stop in targets:
            with reading(path, where):
                ds = f[where]
                if layout.open_for_write:
                    ds.refresh()
                if not _verify_chunks(raw, ds, stop):
                    _read_through(ds, stop)


def _verify_chunks(raw, ds, stop) -> bool:
    """Fletcher-32 of every stored chunk holding rows below ``stop``; False where it cannot
    (no checksum filter, no ``chunk_iter``): then the caller reads the rows instead."""
    if not ds.chunks or not ds.fletcher32 or not hasattr(ds.id, "chunk_iter"):
        return False
    chunks = []
    ds.id.chunk_iter(chunks.append)
    for info in chunks:
        if stop is not None and info.chunk_offset and info.chunk_offset[0] >= stop:
            continue
        if info.filter_mask:  # a filter was skipped for this chunk: read it the long way
            return False
        data = os.pread(raw.fileno(), info.size, info.byte_offset)
        if len(data) != info.size or info.size < 4:
            raise RunFileError(
                f"chunk at byte {info.byte_offset} cut short ({len(data)} of {info.size} bytes)"
            )
        stored = int.from_bytes(data[-4:], "little")
        if hdf5.fletcher32(memoryview(data)[:-4]) not in (stored, int.from_bytes(data[-4:], "big")):
            raise RunFileError(f"the chunk at byte {info.byte_offset} fails its checksum")
    return True


def _read_through(ds, stop) -> None:
    if ds.ndim == 0 or not ds.chunks:
        ds[()]
        return
    n = ds.shape[0] if stop is None else min(stop, ds.shape[0])
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    block = max(ds.chunks[0], (_VERIFY_BLOCK_BYTES // row_bytes) // ds.chunks[0] * ds.chunks[0])
    for start in range(0, n, block):
        ds[start : min(n, start + block)]


_VERIFY_BLOCK_BYTES = 32 << 20


def _first_bad(steps: np.ndarray, *, strict: bool | None, low: int) -> int | None:
    """Index of the first step below ``low`` or, unless ``strict`` is None, not after (strict)
    or before (not strict) the one before it; None if there is none."""
    if steps.size == 0:
        return None
    ok = steps >= low
    if strict is not None:
        ok[1:] &= (np.diff(steps) > 0) if strict else (np.diff(steps) >= 0)
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else None


def _cut(path, notes, committed, where, steps, bad, rule):
    if committed is not None:
        raise RunFileError(f"{path}: damaged file: {where}: row {bad} is step {int(steps[bad])} ({rule})")
    notes.append(f"{where}: read up to row {bad} of {len(steps)}; the rest was left half-written ({rule})")
    return steps[:bad]


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_root(path: str, f: h5py.File):
    """The root attributes of a file opened for appending (write_landscape)."""
    with reading(path, "root attributes"):
        raw, _ = _root_identity(path, f, max(1, _file_size(path)))
        _root_meta(path, raw)
