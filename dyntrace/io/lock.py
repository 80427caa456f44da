"""One writer per run file, across processes: an advisory lock beside the file.

HDF5's own file lock cannot do this: a SWMR writer releases it as soon as SWMR writing
starts (so that readers can open the file), and a second writer then truncates the file
under the first. The writer therefore holds ``flock`` on ``<file>.lock`` for as long as the
run file is open for writing, and writes its process id, host and start time into it, so
that a second writer can say who holds the file. The lock dies with its process (a killed
writer leaves the lock file, unlocked); a clean release removes the file.
"""

from __future__ import annotations

import os
import socket
import time

from dyntrace.errors import RunFileBusyError

try:
    import fcntl
except ImportError:  # Windows: no advisory lock; only writers of this process are checked
    fcntl = None

__all__ = ["WriteLock", "lock_path"]

_HELD: set[str] = set()  # real paths this process writes (also where fcntl is missing)


def lock_path(path) -> str:
    return os.fspath(path) + ".lock"


class WriteLock:
    """Hold the write lock of ``path`` (raises :class:`RunFileBusyError` if another writer has it).

    Use as a context manager or call :meth:`release`.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._key = os.path.realpath(self.path)
        self._lock_path = lock_path(self.path)
        self._fd: int | None = None
        if self._key in _HELD:
            raise RunFileBusyError(
                f"{self.path}: this process is already writing it (a Recorder that was not closed?)"
            )
        if fcntl is not None:
            self._fd = self._acquire()
        _HELD.add(self._key)

    def _acquire(self) -> int | None:
        for _ in range(100):  # retried only when a releasing holder removed the file under us
            try:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:  # a folder we may not write a lock file into: write without one
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunFileBusyError(
                    f"{self.path}: another process is writing it ({holder}); "
                    f"two writers would destroy both runs (lock: {self._lock_path})"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self._lock_path))
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file after we opened it
                os.close(fd)
                continue
            note = (
                f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            )
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode(), 0)
            return fd
        raise RunFileBusyError(
            f"{self.path}: its lock file {self._lock_path} keeps changing; is another process writing it?"
        )

    def release(self) -> None:
        """Give the lock up (and remove the lock file). Safe to call twice."""
        _HELD.discard(self._key)
        if self._fd is not None:
            try:
                os.unlink(self._lock_path)  # while still holding it: the next writer starts afresh
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "process unknown"
