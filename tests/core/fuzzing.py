"""A seeded fuzzer of run files: damaged variants of a recorded run, read by the commands.

Used by ``tests/core/test_fuzz.py`` (a small run in the suite) and ``benchmarks/fuzz_files.py``
(a large one that prints counts). Each variant is one kind of damage:

- byte damage: ``truncate`` (cut anywhere), ``flip`` (1–8 bytes), ``zero_meta`` (8–512 zero
  bytes outside any data chunk: object headers, B-trees, heaps, superblock, free space),
  ``zero_chunk`` (zero bytes inside a stored data chunk). Whether such a variant is still
  valid is decided by an independent oracle: a plain h5py read of every object (links,
  attributes, data) that must equal the original's.
- structural edits, each of which breaks a rule of the format: ``delete`` (a required
  dataset or group), ``reshape`` (another shape, type or rank; rows removed; rows out of
  order; scalar keys out of range; committed counts beyond the rows), ``attrs`` (bad root,
  group and dataset attributes), ``links`` (soft-link loops, dangling and external links,
  a link to a sibling, a hard link to an ancestor group), ``huge`` (declared sizes of
  terabytes in a file of kilobytes). Half of them are applied to a file whose ``/committed``
  table and ``checksums`` attribute were removed first (as a file written before those
  existed), so that the rules are checked, not only the checksums.

Each variant goes through ``dyntrace info``, ``info --json``, ``plot`` and ``compare`` (with
the undamaged run) in-process (click's ``CliRunner``) inside worker processes, with a
deadline per variant: a worker that passes it is killed and the variant counts as a hang.
An outcome is wrong if it hangs, shows a traceback or an "internal error", exits 0 for an
invalid file without a note saying what was worked around, or fails a valid file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np

KINDS = ("truncate", "flip", "zero_meta", "zero_chunk", "delete", "reshape", "attrs", "links", "huge")
BYTE_KINDS = KINDS[:4]
COMMANDS = ("info", "info_json", "plot", "compare")
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))


# =============================================================================================
# Base runs
# =============================================================================================

_RECORD = textwrap.dedent(
    """
    import os, signal, sys, time
    import torch
    from torch import nn
    import dyntrace
    from dyntrace.io import format as fmt

    path, kill = sys.argv[1], sys.argv[2] == "kill"
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Sigmoid(),
                          nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    # the closed run has every probe; the killed one the default set (fewer objects, faster reads).
    # One batch each (the 30 steps take far less than flush_every), so that the files, and the
    # variants made from them, are the same from one run to the next.
    rec = dyntrace.Recorder(model, opt, path, every=3, probes=None if kill else "all", trajectory=5,
                            flush_every=1.0 if kill else 1e9, config={"fuzz": "base"})
    for step in range(1, 31):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        rec.log(loss=loss)
        if step % 10 == 0:
            rec.log(val_loss=loss.detach() * 1.1)
    if kill:  # a killed writer: wait until everything is committed, then die
        time.sleep(2.5)
        os.kill(os.getpid(), signal.SIGKILL)
    rec.close()
    fmt.write_landscape(path, "line", {"xcoordinates": [0.0, 0.5, 1.0], "train_loss": [1.0, 0.5, 0.7]},
                        {"kind": "line"})
    fmt.write_landscape(path, "plane", {"xcoordinates": [-1.0, 0.0, 1.0], "ycoordinates": [-1.0, 1.0],
                                        "train_loss": [[1.0, 0.2, 1.0], [1.5, 0.7, 1.5]]},
                        {"kind": "random_plane", "seed": 0})
    """
)


def make_bases(folder: str) -> dict[str, str]:
    """Record the two runs the variants are made from: ``closed`` (every probe, closed cleanly,
    two landscapes) and ``killed`` (the default probes; its writer was killed after committing
    30 steps)."""
    os.makedirs(folder, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    bases = {name: os.path.join(folder, f"{name}.h5") for name in ("closed", "killed")}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", _RECORD, path, "kill" if name == "killed" else "close"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in bases.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        expected = -signal.SIGKILL if name == "killed" else 0
        if proc.returncode != expected:
            raise RuntimeError(f"recording the {name} base run ended with {proc.returncode}:\n{err}")
    return bases


# =============================================================================================
# Superblock flags: structural edits of a killed file need HDF5 to open it for writing
# =============================================================================================


def _set_flags(path: str, flags: int) -> None:
    from dyntrace.io.hdf5 import lookup3

    with open(path, "r+b") as fh:
        head = bytearray(fh.read(48))
        if head[8] != 3:
            return
        head[11] = flags
        head[44:48] = lookup3(bytes(head[:44])).to_bytes(4, "little")
        fh.seek(0)
        fh.write(head)


def _flags(path: str) -> int:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head[11] if len(head) == 12 and head[8] == 3 else 0


def _open_any(path: str, mode: str = "r"):
    """h5py handle of a closed or killed file (a killed one through the flags-cleared view)."""
    import h5py

    from dyntrace.io import hdf5

    block = hdf5.superblock(path)
    return hdf5.open_plain(path, block) if mode == "r" else h5py.File(path, mode)


# =============================================================================================
# The oracle: everything in the file, read plainly by h5py
# =============================================================================================


def content(path: str) -> str | None:
    """A digest of every link, attribute and dataset value (None if h5py cannot read it all)."""
    import h5py

    try:
        digest = hashlib.sha256()
        with _open_any(path) as f:

            def add(name, obj):
                link = obj.parent.get(obj.name.rsplit("/", 1)[1], getlink=True) if name != "/" else None
                digest.update(f"{name}|{type(link).__name__}|".encode())
                for key in sorted(obj.attrs):
                    value = np.asarray(obj.attrs[key])
                    digest.update(f"@{key}|{value.dtype.str}|{value.shape}|".encode())
                    digest.update(
                        repr(value.tolist()).encode() if value.dtype.kind in "OSU" else value.tobytes()
                    )
                if isinstance(obj, h5py.Group):
                    digest.update(repr(sorted(obj.keys())).encode())
                else:
                    value = obj[()]
                    digest.update(f"{obj.dtype.str}|{obj.shape}|{obj.maxshape}|{obj.chunks}|".encode())
                    digest.update(
                        repr(np.asarray(value).tolist()).encode()
                        if obj.dtype.kind in "OSU"
                        else np.ascontiguousarray(value).tobytes()
                    )

            add("/", f)
            f.visititems(add)
        return digest.hexdigest()
    except Exception:  # noqa: BLE001  (anything h5py cannot read is not valid)
        return None


# =============================================================================================
# Variants
# =============================================================================================


@dataclass
class Variant:
    id: str
    kind: str
    base: str  # "closed" or "killed"
    path: str
    what: str
    valid: bool | None = None  # decided by construction (structural) or by the oracle (bytes)
    oracle_cpu: float = 0.0


def _raw_ranges(path: str) -> list[tuple[int, int]]:
    """Byte ranges of stored raw data (every chunk of every dataset, contiguous storage)."""
    import h5py

    ranges = []
    with _open_any(path) as f:

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            if obj.chunks:
                for i in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(i)
                    ranges.append((info.byte_offset, info.byte_offset + info.size))
            else:
                offset = obj.id.get_offset()
                if offset is not None:
                    ranges.append((offset, offset + obj.id.get_storage_size()))

        f.visititems(visit)
    return sorted(ranges)


def _outside(ranges, size) -> list[tuple[int, int]]:
    gaps, position = [], 0
    for start, end in ranges:
        if start > position:
            gaps.append((position, start))
        position = max(position, end)
    if position < size:
        gaps.append((position, size))
    return gaps


def _pick_in(rng: random.Random, spans, length: int) -> int:
    weights = [max(1, end - start) for start, end in spans]
    start, end = rng.choices(spans, weights)[0]
    return rng.randrange(start, max(start + 1, end))


def make_variants(bases: dict, folder: str, per_kind: int, seed: int) -> list[Variant]:
    """``per_kind`` variants of each kind, spread over the bases, written under ``folder``."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    data = {name: open(path, "rb").read() for name, path in bases.items()}
    ranges = {name: _raw_ranges(path) for name, path in bases.items()}
    variants = []
    for kind in KINDS:
        for i in range(per_kind):
            base = ("closed", "killed")[i % 2]
            path = os.path.join(folder, f"{kind}-{i:04d}-{base}.h5")
            what = _BUILDERS[kind](rng, data[base], ranges[base], bases[base], path)
            variants.append(
                Variant(
                    id=f"{kind}-{i:04d}-{base}",
                    kind=kind,
                    base=base,
                    path=path,
                    what=what,
                    valid=None if kind in BYTE_KINDS else False,
                )
            )
    return variants


def _write(path, data):
    with open(path, "wb") as fh:
        fh.write(data)


def _truncate(rng, data, ranges, base, path):
    choice = rng.random()
    n = (
        len(data) - rng.randint(1, 64)
        if choice < 0.2
        else rng.randint(0, 200)
        if choice < 0.3
        else rng.randrange(len(data))
    )
    _write(path, data[: max(0, n)])
    return f"cut to {max(0, n)} of {len(data)} bytes"


def _flip(rng, data, ranges, base, path):
    out = bytearray(data)
    offsets = [rng.randrange(len(data)) for _ in range(rng.randint(1, 8))]
    for offset in offsets:
        out[offset] ^= rng.randint(1, 255)
    _write(path, bytes(out))
    return f"flipped bytes at {offsets}"


def _zero(rng, data, spans, path, where):
    out = bytearray(data)
    length = rng.choice((8, 16, 32, 64, 128, 512))
    offset = _pick_in(rng, spans, length)
    out[offset : offset + length] = bytes(len(out[offset : offset + length]))
    _write(path, bytes(out))
    return f"zeroed {length} bytes at {offset} ({where})"


def _zero_meta(rng, data, ranges, base, path):
    return _zero(rng, data, _outside(ranges, len(data)), path, "outside data chunks")


def _zero_chunk(rng, data, ranges, base, path):
    return _zero(rng, data, ranges, path, "inside a data chunk")


def _edit(base, path, rng, edit):
    """Copy ``base`` to ``path`` and apply ``edit(f, rng)`` with h5py; half of the time to a file
    first stripped of /committed and the checksums attribute."""
    import h5py

    shutil.copyfile(base, path)
    flags = _flags(path)
    _set_flags(path, 0)
    legacy = rng.random() < 0.5
    with h5py.File(path, "r+") as f:
        if legacy:
            if "committed" in f:
                del f["committed"]
            if "checksums" in f.attrs:
                del f.attrs["checksums"]
        what = edit(f, rng, legacy)
    if flags:
        _set_flags(path, flags)
    return f"{'(no committed, no checksums) ' if legacy else ''}{what}"


def _datasets(f, *, growing=None, legacy=False):
    import h5py

    out = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and not name.startswith("landscape"):
            is_growing = obj.maxshape and obj.maxshape[0] is None
            if growing is None or growing == bool(is_growing):
                out.append(name)

    f.visititems(visit)
    if legacy:
        out = [n for n in out if n != "committed"]
    return sorted(out)


_REQUIRED = [
    "closed",
    "committed",
    "scalars/names",
    "scalars/step",
    "scalars/key",
    "scalars/value",
    "probes/gradients/names",
    "probes/gradients/step",
    "probes/activations/names",
    "probes/activations/step",
    "trajectory/names",
    "trajectory/sizes",
    "trajectory/step",
    "trajectory/params",
    "scalars",
    "probes",
    "probes/weights/kind",
]


def _delete(rng, data, ranges, base, path):
    def edit(f, rng, legacy):
        targets = [
            t
            for t in _REQUIRED
            if t in f and not (legacy and t == "committed") and t != "probes/weights/kind"
        ]
        if not legacy:  # a missing field is only detectable through the checksums
            targets += [n for n in _datasets(f) if n.startswith("probes/")]
        if "landscape" in f:
            targets += ["landscape/plane/xcoordinates", "landscape/line/train_loss"]
        target = rng.choice(sorted(set(targets)))
        del f[target]
        return f"deleted /{target}"

    return _edit(base, path, rng, edit)


def _replace(f, name, data, **kwargs):
    attrs = dict(f[name].attrs)
    del f[name]
    ds = f.create_dataset(name, data=data, **kwargs)
    for key, value in attrs.items():
        ds.attrs[key] = value


def _reshape(rng, data, ranges, base, path):
    def edit(f, rng, legacy):
        growing = _datasets(f, growing=True)
        fixed = [n for n in _datasets(f, growing=False, legacy=legacy) if n != "committed"]
        choice = rng.randrange(9)
        if choice == 0:  # another type
            name = rng.choice(growing + fixed)
            old = f[name][()]
            old = np.asarray(old)
            new = (
                old.astype("f4")
                if old.dtype.kind in "iu"
                else np.arange(old.size, dtype="f4").reshape(old.shape)
                if old.dtype.kind in "SO"
                else old.astype("S8")
            )
            _replace(f, name, new)
            return f"/{name} stored as {new.dtype}"
        if choice == 1:  # another rank (a static field's extra trailing axis is within the rules
            # of a file without checksums: those are only reshaped in a file with them)
            name = rng.choice(
                growing
                + (fixed if not legacy else [n for n in fixed if n.endswith(("names", "kind", "role"))])
            )
            old = np.asarray(f[name][()])
            new = old.reshape(-1) if old.ndim > 1 else old.reshape(-1, 1)
            _replace(
                f,
                name,
                new,
                maxshape=(None, *new.shape[1:]) if name in growing and new.ndim else None,
                chunks=True if name in growing and new.size else None,
            )
            return f"/{name} reshaped {old.shape} -> {new.shape}"
        if choice == 2:  # a column more or less
            name = rng.choice([n for n in growing + fixed if f[n].ndim >= 2 or n.endswith("names")])
            old = np.asarray(f[name][()])
            new = (
                np.concatenate([old, old[:1]])
                if old.ndim == 1
                else old[:, :-1]
                if old.shape[1] > 1
                else np.concatenate([old, old], 1)
            )
            _replace(f, name, new, maxshape=(None, *new.shape[1:]) if name in growing else None, chunks=True)
            return f"/{name} {old.shape} -> {new.shape}"
        if choice == 3:  # rows taken off a column (fewer than the step column or the committed count)
            # (in a file without /committed, the scalar log is as long as its shortest column: a
            # shorter key or value column is a valid shorter log there, so not this edit)
            name = rng.choice(
                [
                    n
                    for n in growing
                    if f[n].shape[0] > 1
                    and not n.endswith("/step")
                    and n != "scalars/names"
                    and not (legacy and n.startswith("scalars/"))
                ]
            )
            ds = f[name]
            ds.resize(ds.shape[0] // 2, axis=0)
            return f"/{name} cut to {ds.shape[0]} rows"
        if choice == 4:  # record steps out of order (scalar steps need no order: a negative one)
            name = rng.choice([n for n in growing if n.endswith("/step") and f[n].shape[0] > 2])
            values = f[name][()]
            i = rng.randrange(1, len(values))
            values[i] = values[i - 1] - rng.randint(1, 3) if name != "scalars/step" else -rng.randint(1, 5)
            f[name][...] = values
            return f"/{name}[{i}] = {values[i]} (after {values[i - 1]})"
        if choice == 5:  # a scalar key naming no scalar
            values = f["scalars/key"][()]
            i = rng.randrange(len(values))
            values[i] = rng.choice([len(f["scalars/names"]) + rng.randint(0, 5), -1 - rng.randint(0, 3)])
            f["scalars/key"][...] = values
            return f"/scalars/key[{i}] = {values[i]}"
        if choice == 6 and "committed" in f:  # committed beyond the rows
            values = f["committed"][()]
            i = rng.randrange(len(values))
            values[i] += rng.randint(1, 50)
            f["committed"][...] = values
            return f"/committed[{i}] raised to {values[i]}"
        if choice == 7:  # /closed not a 0/1/2 flag
            value = rng.choice(
                [
                    np.array([7], np.int8),
                    np.array([b"yes"]),
                    np.zeros(0, np.int8),
                    np.array([1, 1], np.int8),
                    np.array([1.5]),
                ]
            )
            _replace(f, "closed", value)
            return f"/closed = {value!r}"
        # rows added at the end of the step column only (phantom records)
        name = rng.choice(
            [n for n in growing if n.endswith("/step") and not (legacy and n == "scalars/step")]
        )
        ds = f[name]
        extra = rng.randint(1, 40)
        ds.resize(ds.shape[0] + extra, axis=0)
        if "committed" in f:
            tables = json.loads(f["committed"].attrs["tables"])
            table = name.rsplit("/", 1)[0]
            values = f["committed"][()]
            values[tables.index(table)] = ds.shape[0]
            f["committed"][...] = values
        return f"/{name} extended by {extra} rows of zeros"

    return _edit(base, path, rng, edit)


_BAD_VALUES = {
    "format": [b"dyntrace-rum", 3, "", np.array([1, 2])],
    "schema_version": ["abc", np.array([1, 2]), float("nan"), 1.5, -1, 0, 99, True, b"1", "1"],
    "config": ["{not json", "[1, 2]", 5, "null"],
    "probes": ["not json", "{}", 7],
    "optimizer": ["[]", "{", 2.5],
    "n_parameters": ["abc", 1.5, "[1]"],
    "created": [5, np.array([1.0, 2.0])],
    "model_class": [np.array([1, 2]), 3],
    "checksums": ["{", "[]", '{"/": 5}', "{}"],
}


def _attrs(rng, data, ranges, base, path):
    def edit(f, rng, legacy):
        choice = rng.random()
        if choice < 0.6:
            key = rng.choice([k for k in _BAD_VALUES if not (legacy and k == "checksums")])
            value = rng.choice(_BAD_VALUES[key])
            if rng.random() < 0.15 and key in ("format", "schema_version"):
                del f.attrs[key]
                return f"root attribute {key} deleted"
            f.attrs[key] = value
            return f"root attribute {key} = {value!r}"
        if choice < 0.8:
            probe = rng.choice([p for p in ("gradients", "activations", "weights") if p in f["probes"]])
            scale = f["probes"][probe].attrs.get("hist_scale", "value")
            other = (
                "value"
                if (scale.decode() if isinstance(scale, bytes) else str(scale)) == "log10_abs"
                else "log10_abs"
            )
            key, value = rng.choice(
                [("hist_scale", "bogus"), ("hist_scale", 5), ("nonfinite_scope", "x"), ("hist_scale", other)]
            )
            if legacy and value == other:
                value = "bogus"  # a valid but different value is only detectable through the checksums
            f["probes"][probe].attrs[key] = value
            return f"/probes/{probe} attribute {key} = {value!r}"
        if not legacy:
            name = rng.choice(_datasets(f))
            f[name].attrs["unit"] = "parsecs"
            return f"/{name} attribute unit = 'parsecs'"
        name = rng.choice([n for n in _datasets(f, growing=False) if "edges" in n or "units" in n])
        f[name].attrs["static"] = False
        return f"/{name} attribute static = False"

    return _edit(base, path, rng, edit)


def _links(rng, data, ranges, base, path):
    import h5py

    def edit(f, rng, legacy):
        targets = [t for t in _REQUIRED if t in f and not (legacy and t == "committed")]
        target = rng.choice(targets)
        parent = target.rsplit("/", 1)[0] if "/" in target else "/"
        choice = rng.randrange(6)
        del f[target]
        if choice == 0:
            f[target] = h5py.SoftLink(f"/{target}")
            return f"/{target} -> soft link to itself"
        if choice == 1:
            f[target] = h5py.SoftLink("/nowhere/at/all")
            return f"/{target} -> dangling soft link"
        if choice == 2:
            f[target] = h5py.ExternalLink("missing_file.h5", f"/{target}")
            return f"/{target} -> external link to a missing file"
        if choice == 3:
            f[target] = h5py.ExternalLink(os.path.basename(base), f"/{target}")
            return f"/{target} -> external link to the same object in the undamaged run"
        if choice == 4:
            siblings = [n for n in f[parent].keys() if n != target.rsplit("/", 1)[-1]]
            sibling = rng.choice(siblings)
            f[target] = h5py.SoftLink(f"{'' if parent == '/' else '/' + parent}/{sibling}")
            return f"/{target} -> soft link to its sibling {sibling}"
        f[target] = f[parent] if parent != "/" else f["/"]
        return f"/{target} -> hard link to its parent group (a cycle)"

    return _edit(base, path, rng, edit)


def _huge(rng, data, ranges, base, path):
    def edit(f, rng, legacy):
        choice = rng.randrange(3)
        if choice == 0:  # a growing table declaring 2**40 rows (and committed ones, where there is a count)
            table = rng.choice(["scalars", "probes/gradients", "probes/activations", "trajectory"])
            rows = 2 ** rng.choice([32, 36, 40])
            columns = (
                [f"{table}/{c}" for c in ("step", "key", "value")]
                if table == "scalars"
                else [
                    f"{table}/{n}"
                    for n in f[table]
                    if f[f"{table}/{n}"].maxshape and f[f"{table}/{n}"].maxshape[0] is None
                ]
            )
            for name in columns:
                f[name].resize(rows, axis=0)
            if "committed" in f:
                tables = json.loads(f["committed"].attrs["tables"])
                values = f["committed"][()]
                values[tables.index(table)] = rows
                f["committed"][...] = values
            return f"/{table}: {rows} rows declared"
        if choice == 1:  # a static dataset declaring petabytes
            name = rng.choice(
                [
                    n
                    for n in _datasets(f, growing=False)
                    if "edges" in n or "units" in n or n == "trajectory/sizes"
                ]
            )
            shape = f[name].shape
            attrs = dict(f[name].attrs)
            del f[name]
            ds = f.create_dataset(
                name,
                shape=(2**30, *(shape[1:] or ())),
                chunks=(1, *(shape[1:] or ())),
                dtype=np.float64 if "edges" in name else np.int64,
            )
            for key, value in attrs.items():
                ds.attrs[key] = value
            return f"/{name} declares {ds.shape}"
        name = rng.choice(["scalars/names", "probes/gradients/names"])
        if name == "scalars/names":
            f[name].resize(2**36, axis=0)
            if "committed" in f:
                tables = json.loads(f["committed"].attrs["tables"])
                values = f["committed"][()]
                values[tables.index("scalars/names")] = 2**36
                f["committed"][...] = values
            return "/scalars/names: 2**36 names declared"
        attrs = dict(f[name].attrs)
        del f[name]
        ds = f.create_dataset(name, shape=(2**34,), chunks=(1024,), dtype="S32")
        for key, value in attrs.items():
            ds.attrs[key] = value
        return f"/{name} declares 2**34 names"

    return _edit(base, path, rng, edit)


_BUILDERS = {
    "truncate": _truncate,
    "flip": _flip,
    "zero_meta": _zero_meta,
    "zero_chunk": _zero_chunk,
    "delete": _delete,
    "reshape": _reshape,
    "attrs": _attrs,
    "links": _links,
    "huge": _huge,
}


# =============================================================================================
# Running: worker processes, each reading variants in-process, with a deadline per variant
# =============================================================================================


def _worker_main() -> None:  # pragma: no cover  (runs in the worker process)
    """Read requests (JSON lines) on stdin, answer one JSON line each on stdout."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    from click.testing import CliRunner

    from dyntrace.cli import main

    reference: dict = {}
    out = sys.stdout
    sys.stdout = io.StringIO()  # nothing but answers on the real stdout
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"id": request["id"], "results": {}}
        if request.get("oracle"):
            started = time.process_time()
            base_digest = reference.get(request["base"])
            if base_digest is None:
                base_digest = reference[request["base"]] = content(request["base"])
            answer["valid"] = content(request["path"]) == base_digest
            answer["oracle_cpu"] = round(time.process_time() - started, 3)
        folder = tempfile.mkdtemp(prefix="fuzz-out-")
        try:
            for command in request["commands"]:
                args = {
                    "info": ["info", request["path"]],
                    "info_json": ["info", "--json", request["path"]],
                    "plot": [
                        "plot",
                        request["path"],
                        "-o",
                        os.path.join(folder, "plot"),
                        "--dpi",
                        "30",
                        *(_LIGHT_PLOT if request.get("light_valid_plots") and answer.get("valid") else ()),
                    ],
                    "compare": [
                        "compare",
                        request["path"],
                        request["base"],
                        "-o",
                        os.path.join(folder, "compare"),
                        "--dpi",
                        "30",
                    ],
                }[command]
                started, cpu = time.monotonic(), time.process_time()
                result = CliRunner().invoke(main, args)
                text = result.output + (result.stderr if _has_stderr(result) else "")
                unexpected = result.exception is not None and not isinstance(result.exception, SystemExit)
                answer["results"][command] = {
                    "exit": result.exit_code,
                    "traceback": unexpected or "Traceback" in text or "internal error" in text,
                    "note": _noted(
                        command, result.stdout if command == "info_json" else text, request["path"]
                    ),
                    "last": text.strip().splitlines()[-1][:300] if text.strip() else "",
                    "seconds": round(time.monotonic() - started, 3),
                    "cpu": round(time.process_time() - cpu, 3),
                    "error": repr(result.exception)[:300] if unexpected else "",
                }
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        out.write(json.dumps(answer) + "\n")
        out.flush()


# A variant the oracle found byte for byte equal to its base in everything stored draws the
# base's figures: in the suite it draws three that read every kind of data (scalars, histogram
# blocks, landscapes) instead of all of them.
_LIGHT_PLOT = ("--only", "loss,activation_heatmaps,landscapes")


def _noted(command: str, text: str, path: str) -> bool:
    """Whether the command said what the reader worked around (a note of the reader, not a
    skipped figure)."""
    if command == "info":
        return "\n  note " in text
    if command == "info_json":
        try:
            return bool(json.loads(text[text.index("{") :]).get("notes"))
        except ValueError:
            return False
    return f"note: {path}:" in text


def _has_stderr(result) -> bool:
    try:
        return bool(result.stderr)
    except ValueError:  # click < 8.2 without a separate stderr
        return False


@dataclass
class Outcome:
    variant: Variant
    results: dict = field(default_factory=dict)
    hang: bool = False

    @property
    def problems(self) -> list[str]:
        v = self.variant
        if self.hang:
            return ["hang"]
        out = []
        for command, r in self.results.items():
            if r["traceback"]:
                out.append(f"{command}: traceback ({r['error'] or r['last']})")
            elif r["exit"] == 0 and v.valid is False and not r["note"]:
                out.append(f"{command}: exit 0 on an invalid file")
            elif r["exit"] != 0 and v.valid is True:
                out.append(f"{command}: exit {r['exit']} on a valid file ({r['last']})")
        return out


class _Worker:
    def __init__(self):
        code = f"import sys; sys.path.insert(0, {_HERE!r}); import fuzzing; fuzzing._worker_main()"
        env = {
            **os.environ,
            "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            bufsize=1,
        )
        self.job = None
        self.started = 0.0

    def send(self, job, request):
        self.job, self.started = job, time.monotonic()
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def run(
    variants: list[Variant],
    *,
    bases: dict,
    workers: int = 2,
    deadline: float = 60.0,
    commands_for=lambda variant: COMMANDS,
    light_valid_plots: bool = False,
    progress=None,
) -> list[Outcome]:
    """Every variant through its commands in ``workers`` processes; a variant that takes more
    than ``deadline`` seconds is a hang (its worker is killed and replaced). With
    ``light_valid_plots``, a variant found valid by the oracle draws three figures, not all."""
    todo = list(enumerate(variants))
    outcomes: list[Outcome | None] = [None] * len(variants)
    pool = [_Worker() for _ in range(max(1, min(workers, len(variants))))]
    selector = selectors.DefaultSelector()
    for worker in pool:
        selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)

    def feed(worker):
        if todo:
            index, variant = todo.pop(0)
            worker.send(
                index,
                {
                    "id": variant.id,
                    "path": variant.path,
                    "base": bases[variant.base],
                    "commands": list(commands_for(variant)),
                    "oracle": variant.valid is None,
                    "light_valid_plots": light_valid_plots,
                },
            )

    for worker in pool:
        feed(worker)
    done = 0
    try:
        while any(w.job is not None for w in pool):
            for key, _ in selector.select(timeout=1.0):
                worker = key.data
                line = worker.proc.stdout.readline()
                variant = variants[worker.job]
                if not line:  # the worker died (it never should): a crash is a failure too
                    outcomes[worker.job] = Outcome(
                        variant,
                        {
                            "worker": {
                                "exit": -1,
                                "traceback": True,
                                "note": False,
                                "last": "worker died",
                                "error": "worker died",
                            }
                        },
                    )
                else:
                    answer = json.loads(line)
                    if "valid" in answer:
                        variant.valid = answer["valid"]
                        variant.oracle_cpu = answer.get("oracle_cpu", 0.0)
                    outcomes[worker.job] = Outcome(variant, answer["results"])
                done += 1
                if progress:
                    progress(done, len(variants), outcomes[worker.job])
                if not line:
                    selector.unregister(worker.proc.stdout)
                    pool[pool.index(worker)] = worker = _replace_worker(worker, selector)
                else:
                    worker.job = None
                feed(worker)
            for i, worker in enumerate(pool):
                if worker.job is not None and time.monotonic() - worker.started > deadline:
                    outcomes[worker.job] = Outcome(variants[worker.job], hang=True)
                    done += 1
                    if progress:
                        progress(done, len(variants), outcomes[worker.job])
                    selector.unregister(worker.proc.stdout)
                    pool[i] = _replace_worker(worker, selector)
                    feed(pool[i])
    finally:
        for worker in pool:
            worker.proc.stdin.close()
            worker.kill()
    return outcomes


def _replace_worker(worker, selector):
    worker.kill()
    fresh = _Worker()
    selector.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)
    return fresh


def summary(outcomes: list[Outcome]) -> dict:
    """Counts per kind: variants, valid, hangs, tracebacks, accepted invalid, rejected valid, by command."""
    table = {}
    for o in outcomes:
        row = table.setdefault(
            o.variant.kind,
            {
                "variants": 0,
                "valid": 0,
                "hangs": 0,
                "tracebacks": 0,
                "exit0_invalid": 0,
                "rejected_valid": 0,
                "noted": 0,
                **{f"exit0_{c}": 0 for c in COMMANDS},
                **{f"ran_{c}": 0 for c in COMMANDS},
            },
        )
        row["variants"] += 1
        row["valid"] += bool(o.variant.valid)
        row["hangs"] += o.hang
        for command, r in o.results.items():
            row["tracebacks"] += bool(r["traceback"])
            row["exit0_invalid"] += r["exit"] == 0 and o.variant.valid is False and not r["note"]
            row["noted"] += r["exit"] == 0 and o.variant.valid is False and bool(r["note"])
            row["rejected_valid"] += r["exit"] != 0 and o.variant.valid is True
            if command in COMMANDS:
                row[f"ran_{command}"] += 1
                row[f"exit0_{command}"] += r["exit"] == 0
    return table
