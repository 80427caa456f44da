"""HDF5 mechanics the run format relies on, kept apart from the format's names.

A SWMR reader skips HDF5's end-of-file check and retries a metadata block whose checksum
fails with a backoff that can last an hour, so a damaged file can hang it. This module gives
the reader what it needs to never hang:

- :func:`superblock` parses the superblock (version 2 or 3) in plain Python, checksum
  included: its end-of-file address (a truncated file is known before HDF5 opens it) and
  its consistency flags (set while a writer has the file open, and left set by a writer that
  was killed).
- :func:`open_plain` opens read-only without SWMR: HDF5 then checks the end of file and fails
  a bad checksum at once. A file whose flags are set cannot be opened that way (HDF5 refuses
  "already open for write"), so it is read through :class:`_FlagsClearedView`, which
  presents the same bytes with the flags cleared in the superblock.
- :func:`open_swmr` opens read-only in SWMR mode with a bounded number of metadata read
  attempts (``H5Pset_metadata_read_attempts``, not wrapped by h5py, called through ctypes).
"""

from __future__ import annotations

import ctypes
import io
import os
from dataclasses import dataclass

import h5py
import numpy as np

__all__ = ["Superblock", "superblock", "open_plain", "open_swmr", "READ_ATTEMPTS", "lookup3", "fletcher32"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"
# SWMR read attempts for one metadata block. HDF5 sleeps 1, 2, 4 … ns between attempts (at
# most 1 h / attempts each), so 20 attempts wait at most about 1 ms in all: enough to ride
# over a block a live writer is rewriting, not long enough to hang on a damaged one. (The
# default for SWMR reads is 100 attempts: about 40 minutes.)
READ_ATTEMPTS = 20


@dataclass(frozen=True)
class Superblock:
    """What the first bytes of an HDF5 file say (versions 2 and 3 only; None otherwise)."""

    version: int
    flags: int  # file consistency flags: bit 0 open for write, bit 2 open for SWMR write
    eof: int  # end-of-file address: the file must be at least this long
    size: int  # bytes of the superblock (checksum included)

    @property
    def open_for_write(self) -> bool:
        return bool(self.flags & 0b101)


class SuperblockError(ValueError):
    """The first bytes look like HDF5 but the superblock is damaged."""


def superblock(path) -> Superblock | None:
    """The superblock at offset 0 if it is version 2 or 3 (what h5py writes with
    ``libver="latest"``); None for older versions or a superblock elsewhere (a user block).
    Raises :class:`SuperblockError` for a version 2/3 superblock whose checksum fails."""
    with open(path, "rb") as fh:
        head = fh.read(12 + 4 * 8 + 4)
    if not head.startswith(SIGNATURE) or len(head) < 12 or head[8] not in (2, 3):
        return None
    offset_size = head[9]
    if offset_size not in (2, 4, 8):
        raise SuperblockError(f"superblock: invalid size of offsets {offset_size}")
    size = 12 + 4 * offset_size + 4
    if len(head) < size:
        raise SuperblockError("superblock cut short")
    stored = int.from_bytes(head[size - 4 : size], "little")
    if lookup3(head[: size - 4]) != stored:
        raise SuperblockError("superblock checksum mismatch")
    start = 12 + 2 * offset_size  # signature, version, sizes, flags, base and extension addresses
    eof = int.from_bytes(head[start : start + offset_size], "little")
    return Superblock(version=head[8], flags=head[11], eof=eof, size=size)


def open_plain(path, block: Superblock | None) -> h5py.File:
    """Open read-only without SWMR. A file whose superblock says "open for write" is read
    through a view with those flags cleared (HDF5 refuses to open it plainly otherwise)."""
    if block is not None and block.open_for_write:
        return h5py.File(_FlagsClearedView(os.fspath(path), block), "r")
    return h5py.File(os.fspath(path), "r")


def open_swmr(path) -> h5py.File:
    """Open read-only in SWMR mode with at most :data:`READ_ATTEMPTS` reads of a metadata block."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    _set_read_attempts(fapl, READ_ATTEMPTS)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


_SET_ATTEMPTS = None


def _set_read_attempts(fapl, attempts: int) -> None:
    """``H5Pset_metadata_read_attempts`` through ctypes: h5py does not wrap it. The symbol is
    looked up through h5py's own extension module, which links the HDF5 library h5py uses."""
    global _SET_ATTEMPTS
    if _SET_ATTEMPTS is None:
        try:
            function = ctypes.CDLL(h5py.h5p.__file__).H5Pset_metadata_read_attempts
            function.argtypes = [ctypes.c_int64, ctypes.c_uint]
            function.restype = ctypes.c_int
            _SET_ATTEMPTS = function
        except (OSError, AttributeError):  # not found (another platform's loader): HDF5's default
            _SET_ATTEMPTS = False
    if _SET_ATTEMPTS and _SET_ATTEMPTS(fapl.id, attempts) < 0:
        raise OSError("H5Pset_metadata_read_attempts failed")


class _FlagsClearedView(io.RawIOBase):
    """A read-only view of a file whose superblock is presented with its consistency flags
    cleared (and its checksum recomputed); every other byte is the file's own."""

    def __init__(self, path: str, block: Superblock):
        super().__init__()
        self._fh = open(path, "rb", buffering=0)
        try:
            head = bytearray(self._fh.read(block.size))
            head[11] = 0
            head[-4:] = lookup3(bytes(head[:-4])).to_bytes(4, "little")
        except Exception:
            self._fh.close()
            raise
        self._head = bytes(head)

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self._fh.seek(offset, whence)

    def tell(self):
        return self._fh.tell()

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        position = self._fh.tell()
        n = self._fh.readinto(view) or 0
        if n < len(view):  # past the end: zeros (HDF5 has checked the end of file already)
            view[n:] = bytes(len(view) - n)
        if position < len(self._head):
            end = min(len(self._head), position + len(view))
            view[: end - position] = self._head[position:end]
        return len(view)

    def write(self, data):
        raise OSError("read-only view")

    def truncate(self, size=None):
        raise OSError("read-only view")

    def flush(self):
        pass

    def close(self):
        if not self.closed:
            self._fh.close()
        super().close()


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``: the checksum HDF5 puts on its metadata."""
    mask = 0xFFFFFFFF

    def rot(x, k):
        return ((x << k) | (x >> (32 - k))) & mask

    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & mask
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & mask
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & mask
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & mask
        a = (a - c) & mask
        a ^= rot(c, 4)
        c = (c + b) & mask  # (the reference's mix())
        b = (b - a) & mask
        b ^= rot(a, 6)
        a = (a + c) & mask
        c = (c - b) & mask
        c ^= rot(b, 8)
        b = (b + a) & mask
        a = (a - c) & mask
        a ^= rot(c, 16)
        c = (c + b) & mask
        b = (b - a) & mask
        b ^= rot(a, 19)
        a = (a + c) & mask
        c = (c - b) & mask
        c ^= rot(b, 4)
        b = (b + a) & mask
        length -= 12
        i += 12
    if length == 0:
        return c
    tail = bytes(data[i:]) + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    c ^= b
    c = (c - rot(b, 14)) & mask  # (the reference's final())
    a ^= c
    a = (a - rot(c, 11)) & mask
    b ^= a
    b = (b - rot(a, 25)) & mask
    c ^= b
    c = (c - rot(b, 16)) & mask
    a ^= c
    a = (a - rot(c, 4)) & mask
    b ^= a
    b = (b - rot(a, 14)) & mask
    c ^= b
    c = (c - rot(b, 24)) & mask
    return c


_WORDS = 1 << 22
_RAMP = None


def fletcher32(data) -> int:
    """HDF5's Fletcher-32 (``H5_checksum_fletcher32``) of ``data``, vectorised.

    Over the big-endian 16-bit words w_1 … w_m (an odd last byte is a word ``byte << 8``):
    s1 = Σ w_i and s2 = Σ (m − i + 1) w_i, each folded into 16 bits by end-around carry (a
    non-zero sum ≡ 0 mod 65535 stays 65535, as HDF5's folding leaves it); the checksum is
    ``s2 << 16 | s1``.
    """
    global _RAMP
    if _RAMP is None:
        _RAMP = np.arange(_WORDS, dtype=np.int64)
    n = len(data)
    words = np.frombuffer(data, dtype=">u2", count=n // 2)
    m = len(words) + n % 2
    s1 = s2 = 0
    for start in range(0, len(words), _WORDS):  # blocks: the weighted sum stays exact in int64
        w = words[start : start + _WORDS].astype(np.int64)
        total = int(w.sum())
        s1 += total
        s2 += (m - start) * total - int(np.dot(w, _RAMP[: len(w)]))
    if n % 2:
        last = int(data[-1]) << 8
        s1 += last
        s2 += last

    def fold(s):
        return 0 if s == 0 else (s - 1) % 65535 + 1

    return (fold(s2) << 16) | fold(s1)
