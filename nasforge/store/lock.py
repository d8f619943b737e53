"""One driver per study directory: a POSIX record lock on ``DIR/.lock``."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Iterator

from nasforge.errors import StoreError


class StudyLock:
    """One driver per study directory at a time. A POSIX record lock belongs to this process
    alone (forked workers do not inherit it), and the OS drops it when the process dies. Taken
    before anything is written to the study, so the loser of a race writes nothing."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._fh: Any = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> "StudyLock":
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fh = open(self.directory / ".lock", "a+")
        except OSError as exc:
            raise StoreError(f"Cannot use {str(self.directory)!r} as a study directory: {exc.strerror or exc}") from None
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise StoreError(f"The study in {str(self.directory)!r} is being run by another process") from None
        with contextlib.suppress(OSError):  # the pid is a courtesy for people looking
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fcntl.lockf(fh, fcntl.LOCK_UN)
            fh.close()


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    lock = StudyLock(directory).acquire()
    try:
        yield
    finally:
        lock.release()


def driver_running(directory: Path) -> bool:
    """Whether some process holds the study's lock (is running it right now)."""
    lock = Path(directory) / ".lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(fh, fcntl.LOCK_UN)
        return False
