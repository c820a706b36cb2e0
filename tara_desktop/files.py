"""Small file-system helpers shared by every area that writes atomically, privately or exclusively."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder (so a rename inside it is durable) where the OS allows it; Windows cannot
    open folders for fsync, and a failure here only weakens durability, so it is ignored."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- owner-only files and folders ----------------------------------------------------------------
def restrict(path: Path, mode: int) -> None:
    """chmod where the OS has POSIX modes (Windows keeps its per-user ACLs); a failure is ignored."""
    if os.name == "posix":
        try:
            os.chmod(path, mode)
        except OSError:
            pass


def make_private_dir(path: Path, *, parents: bool = False, exist_ok: bool = False) -> None:
    """Create a folder only its owner can enter (0700), whatever the umask; an existing one is tightened."""
    path.mkdir(mode=PRIVATE_DIR, parents=parents, exist_ok=exist_ok)
    restrict(path, PRIVATE_DIR)


def open_private(path: Path, *, exclusive: bool = True) -> IO[bytes]:
    """Open a new file for writing, readable only by its owner (0600) from the first byte on."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, PRIVATE_FILE)
    return os.fdopen(fd, "wb")


def write_private(path: Path, data: bytes) -> None:
    """Write a new owner-only file and fsync it."""
    with open_private(path) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# -- atomic writes -------------------------------------------------------------------------------
# Every writer goes through these: a reader (or a restart after a kill) sees the old file or folder or
# the complete new one, never a half-written one.
@contextlib.contextmanager
def atomic_file(path: Path, *, private: bool = False, temp: Path | None = None) -> Iterator[Path]:
    """Yield a temp path in ``path``'s folder for the caller (or a library) to write; on a clean exit it
    is fsynced, moved over ``path`` with ``os.replace`` and the folder fsynced. On any exception the temp
    file is removed and ``path`` is untouched. ``private`` creates the temp file owner-only (0600) before
    the first byte; ``temp`` names the temp file (it must be in the same folder) where a caller's cleanup
    of stale leftovers depends on the name."""
    path = Path(path)
    tmp = Path(temp) if temp is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if private:
        tmp.unlink(missing_ok=True)
        open_private(tmp).close()
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


def atomic_write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, ``os.replace``, fsync
    of the folder. ``private`` makes the file owner-only (0600) from its first byte."""
    with atomic_file(path, private=private) as tmp:
        if private:
            with open_private(tmp, exclusive=False) as fh:
                fh.write(data)
        else:
            tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_dir(final_path: Path, *, temp: Path | None = None) -> Iterator[Path]:
    """Yield an empty sibling temp folder (``NAME.tmp`` unless ``temp`` names one) to build a folder in;
    on a clean exit it is put in place of ``final_path`` by :func:`commit_dir`. On any exception the temp
    folder is removed and ``final_path`` is untouched."""
    final = Path(final_path)
    tmp = Path(temp) if temp is not None else final.with_name(f"{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        commit_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def commit_dir(built: Path, final_path: Path) -> None:
    """Put the finished folder ``built`` (a sibling of ``final_path``) in its place: every file in it and the
    folder are fsynced and it is renamed to ``final_path``. An existing ``final_path`` is first moved aside
    to ``NAME.old`` and removed once the new one is in place (a kill between the two renames leaves
    ``NAME.old`` and ``built``, both recognisable leftovers). If it fails, ``built`` is left as it was (a
    download can resume from it) and ``final_path`` is untouched."""
    final = Path(final_path)
    for p in sorted(built.rglob("*")):
        if p.is_file():
            fsync_path(p)
    fsync_path(built)
    if final.exists():
        old = final.with_name(f"{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        try:
            os.replace(built, final)
        except BaseException:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(built, final)
    fsync_path(final.parent)


# -- processes -----------------------------------------------------------------------------------
def process_alive(pid: int) -> bool:
    """True while process ``pid`` runs. A process that was killed but not yet reaped by its parent (a
    zombie) is dead: it can do nothing any more."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        psutil = None
    if psutil is not None:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:  # ZombieProcess is one too
            return False
        except psutil.Error:  # AccessDenied: a process of another user, alive
            return True
    if os.name != "posix":  # pragma: no cover - psutil is a dependency; this is a last resort
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- exclusive locks -----------------------------------------------------------------------------
class FileLock:
    """An OS advisory lock (fcntl on POSIX, msvcrt on Windows) on a lock file, held while the object is
    open. The OS drops it when the process dies, however it dies, so a kill never leaves a stale lock.

    ``acquire()`` does not wait: it returns False when another process (or another FileLock object in this
    process) holds the lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def fileno(self) -> int:
        """The locked descriptor (a child process started with it in ``pass_fds`` shares the lock)."""
        if self._fh is None:
            raise ValueError("the lock is not held")
        return self._fh.fileno()

    def acquire(self) -> bool:
        if self._fh is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), PRIVATE_FILE)
        fh = os.fdopen(fd, "r+b")
        try:
            if os.name == "nt":  # pragma: no cover - exercised on Windows
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
                return False
            raise
        self._fh = fh
        return True

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            if os.name == "nt":  # pragma: no cover
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            pass
        fh.close()  # closing the descriptor drops a flock

    def __enter__(self) -> FileLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


# -- errors --------------------------------------------------------------------------------------
def describe_os_error(exc: OSError) -> str:
    """One sentence for an OS error a user can act on: what went wrong, on which path, what to do."""
    where = exc.filename if exc.filename is not None else None
    on = f" ({where})" if where is not None else ""
    code = exc.errno
    if code == errno.ENOSPC or code == getattr(errno, "EDQUOT", -1):
        return f"the disk is full{on}; free some space and try again (nothing half-written was kept)"
    if code == errno.EROFS:
        return f"the disk is read-only{on}; choose a writable location"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied{on}; choose a location you can write to, or fix its permissions"
    if code == errno.ELOOP:
        return f"the path is a symbolic link loop{on}; point it at a real folder or file"
    if code == errno.ENAMETOOLONG:
        return f"the path is too long{on}; choose a shorter one"
    if code == errno.ENOENT:
        return f"no such file or folder{on}; check the path"
    if code == errno.ENOTDIR:
        return f"a part of the path is a file, not a folder{on}; check the path"
    if code == errno.EISDIR:
        return f"the path is a folder, not a file{on}; name a file"
    if code == errno.EIO:
        return f"the disk reported an input/output error{on}; check the disk"
    reason = exc.strerror or type(exc).__name__
    return f"{reason[:1].lower()}{reason[1:]}{on}; check the path and try again"
