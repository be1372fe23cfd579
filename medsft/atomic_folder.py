"""A folder of files written as one unit: one writer at a time; readers see the old folder or the new one.

- `folder_lock(folder)`: an exclusive `flock` on `.NAME.lock` beside the folder. The kernel drops the lock
  when its holder exits, however it exits, so a lock file left by a killed run is not a lock.
- `replace_folder(folder, write)`: `write` fills a fresh temporary folder beside the target (`.NAME.tmp-…`);
  its files are flushed to disk, then one `renameat2(RENAME_EXCHANGE)` swaps it with the old folder, and the
  old files are deleted. Where the exchange is unavailable (not Linux, or a file system without it) two
  renames do the swap, and between them the folder is briefly absent; never half-written.
- `exit_on_signal()`: SIGINT and SIGTERM unwind the run (temporary folder and lock removed) and end it with
  exit status 128 + signal; a signal that arrives during the swap waits until the swap is complete.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from medsft.errors import MedsftError
from medsft.paths import follow_umask

log = logging.getLogger(__name__)

TEMP_MARK = ".tmp-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class FolderBusyError(MedsftError):
    """Another process holds the folder's lock."""


class Interrupted(BaseException):  # noqa: N818  (a signal, not an error: `except Exception` must not catch it)
    """SIGINT or SIGTERM arrived: unwinding so that the run leaves nothing half-done."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def temp_prefix(folder: Path) -> str:
    return f".{folder.name}{TEMP_MARK}"


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock for the block, or raise FolderBusyError at once if another process holds it."""
    path = lock_path(folder)
    created = [parent for parent in (folder.parent, *folder.parent.parents) if not parent.exists()]
    descriptor = None
    try:
        with deferred_signals():  # a signal here must not leave a lock file nobody removes
            folder.parent.mkdir(parents=True, exist_ok=True)
            descriptor = acquire_lock(path, folder.name)
        yield
    finally:
        with deferred_signals():
            if descriptor is not None:
                path.unlink(missing_ok=True)  # removed while still held: no one locks a file about to vanish
                os.close(descriptor)
            for parent in created:  # folders made only for the lock, if the run wrote nothing into them
                try:
                    parent.rmdir()
                except OSError:
                    break


def acquire_lock(path: Path, name: str) -> int:
    """An open descriptor of `path` holding its exclusive lock, with our process id written in it."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip()
            os.close(descriptor)
            raise FolderBusyError(
                f"another run is writing {name} (process {holder or 'unknown'}, lock {path}): wait for it to "
                "finish, or write to another name."
            ) from None
        try:  # the previous holder may have removed the file between our open and flock: lock the new one
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(descriptor), current):
            break
        os.close(descriptor)
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return descriptor


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Temporary folders of `folder` left by a killed run (call it while holding the lock); returns them."""
    stale = [entry for entry in folder.parent.glob(f"{temp_prefix(folder)}*") if entry.is_dir()]
    for entry in stale:
        shutil.rmtree(entry)
    return stale


def replace_folder(
    folder: Path, write: Callable[[Path], None], swapped: Callable[[], None] = lambda: None
) -> None:
    """Fill a fresh temporary folder with `write`, flush it to disk, and swap it in for `folder` whole.
    `swapped` is called as soon as the new folder is in place, before a signal that waited is let through,
    so a run interrupted then reports the new folder, not the old one."""
    temporary = None
    try:
        with deferred_signals():  # a signal here must not leave a folder nobody removes
            folder.parent.mkdir(parents=True, exist_ok=True)
            temporary = Path(tempfile.mkdtemp(prefix=temp_prefix(folder), dir=folder.parent))
            follow_umask(temporary)
        write(temporary)
        sync_tree(temporary)
        with deferred_signals():
            swap_in(temporary, folder)
            swapped()
            shutil.rmtree(temporary, ignore_errors=True)  # now the old folder
            sync_folder(folder.parent)
    finally:
        with deferred_signals():
            if temporary is not None:
                shutil.rmtree(temporary, ignore_errors=True)


def swap_in(new: Path, folder: Path) -> None:
    """Put `new` at `folder`; the old folder (if any) ends up at `new`'s path."""
    if not folder.exists():
        os.rename(new, folder)
        return
    if exchange(new, folder):
        return
    aside = Path(tempfile.mkdtemp(prefix=temp_prefix(folder), dir=folder.parent))
    os.rename(folder, aside / "old")
    os.rename(new, folder)
    os.rename(aside / "old", new)
    os.rmdir(aside)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # a C library without renameat2
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP}:  # kernel or file system without it
        return False
    raise OSError(code, f"cannot swap {first} and {second}: {os.strerror(code)}")


def sync_tree(folder: Path) -> None:
    for entry in folder.iterdir():
        with open(entry, "rb") as handle:
            os.fsync(handle.fileno())
    sync_folder(folder)


def sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --- signals ------------------------------------------------------------------------------------------------


class _SignalGuard:
    """Turns SIGINT/SIGTERM into Interrupted in the main thread; inside `deferred_signals()` they wait."""

    def __init__(self) -> None:
        self.deferring = 0
        self.pending: int | None = None
        self.late: int | None = None
        self.raised = False

    def handle(self, signum: int, frame) -> None:
        if self.raised:  # already unwinding (or done): let the clean-up finish, pass the signal on afterwards
            self.late = self.late or signum
            return
        if self.deferring:
            self.pending = self.pending or signum
            return
        self.raised = True
        raise Interrupted(signum)

    def leave_deferred(self) -> None:
        self.deferring -= 1
        if not self.deferring and self.pending is not None and not self.raised:
            self.raised = True
            raise Interrupted(self.pending)


_GUARDS: list[_SignalGuard] = []


@contextmanager
def deferred_signals() -> Iterator[None]:
    """A block that SIGINT/SIGTERM cannot cut in half (under `exit_on_signal`; elsewhere a no-op)."""
    guard = _GUARDS[-1] if _GUARDS and threading.current_thread() is threading.main_thread() else None
    if guard is None:
        yield
        return
    guard.deferring += 1
    try:
        yield
    finally:
        guard.leave_deferred()


@contextmanager
def exit_on_signal(describe: Callable[[], str]) -> Iterator[None]:
    """SIGINT/SIGTERM during the block: unwind it, log `interrupted by …: describe()`, exit 128 + signal.

    Off the main thread (where Python cannot handle signals) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    guard = _SignalGuard()
    previous = {signum: signal.signal(signum, guard.handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    _GUARDS.append(guard)
    try:
        yield
    except Interrupted as interrupted:
        log.warning("interrupted by %s: %s", signal.Signals(interrupted.signum).name, describe())
        raise SystemExit(128 + interrupted.signum) from None
    finally:
        finished_normally = not guard.raised
        guard.raised = True  # from here on a signal only waits for the old handlers
        _GUARDS.remove(guard)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if finished_normally and guard.late:
            signal.raise_signal(guard.late)
