"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or Ctrl-C while writing leaves the old file (or none), never a half-written one. Also here:

* :func:`check_output_path`, which the commands call on every output path before any work, so that a
  path that cannot be written (an existing folder where a file should go, a parent that is a file, a
  read-only location) fails at once with one clear message instead of after the fit;
* the interrupt flag: once :func:`mark_interrupted` has been called (``diffbio-prob``'s SIGINT handler
  does), the writers here refuse to replace any output, even if the ``KeyboardInterrupt`` itself was
  swallowed (raised inside a garbage-collector callback, for instance, where Python only prints
  "Exception ignored");
* the discard switch (:func:`discard_writes`): in a job of several processes only process 0 writes
  (``diffbio-prob`` sets it once, from ``diffbio_prob.distributed.is_primary()``). The other processes
  check every output path the same way and run every writer, but into a private temporary folder that
  is deleted at once, so no writer needs to know how many processes there are.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = [
    "atomic_write",
    "atomic_path",
    "check_output_path",
    "mark_interrupted",
    "clear_interrupted",
    "interrupted",
    "raise_if_interrupted",
    "discard_writes",
    "writes_discarded",
]

_INTERRUPTED = False
_DISCARD = False


def discard_writes(on: bool = True) -> None:
    """From now on (``on=True``) the atomic writers leave every target untouched and create no folder.

    Paths are still checked (:func:`check_output_path`), so every process of a job fails alike on a bad
    one. ``diffbio_prob.cli.main`` turns this on in every process but process 0 and off when it ends.
    """
    if not isinstance(on, bool):
        raise TypeError(f"on: expected a boolean, got {on!r}")
    global _DISCARD
    _DISCARD = on


def writes_discarded() -> bool:
    """Whether :func:`discard_writes` is on."""
    return _DISCARD


def mark_interrupted() -> None:
    """Record a Ctrl-C: from now on the atomic writers refuse to replace outputs."""
    global _INTERRUPTED
    _INTERRUPTED = True


def clear_interrupted() -> None:
    """Forget a recorded Ctrl-C (``diffbio_prob.cli.main`` calls this when it starts)."""
    global _INTERRUPTED
    _INTERRUPTED = False


def interrupted() -> bool:
    """Whether a Ctrl-C was recorded (see :func:`mark_interrupted`)."""
    return _INTERRUPTED


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C was recorded, even one whose exception was swallowed."""
    if _INTERRUPTED:
        raise KeyboardInterrupt


def _read_only_reason(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):
        pass
    return "permission denied"


def check_output_path(path, what: str = "out", kind: str = "file") -> Path:
    """Check, before any work, that ``path`` can be written as a file (``kind="file"``) or a folder.

    A file path must not be an existing folder or a special file (a device, a FIFO: an atomic write
    would replace it); a folder path must not be an existing file. The nearest existing ancestor must
    be a folder (not a file) that this process may write in. Nothing is created.

    Args:
        path: the output path.
        what: the argument's name for the message (``"--out"``, ``"plots"``).
        kind: ``"file"`` or ``"dir"``.

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``path`` is not a string or path.
        ValueError: ``path`` is empty, or names a folder where a file is expected (or the reverse),
            or lies under a file.
        PermissionError: the location is not writable (permissions or a read-only file system).
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind: expected 'file' or 'dir', got {kind!r}")
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a path, got {type(path).__name__}")
    text = os.fspath(path)
    noun = "file" if kind == "file" else "folder"
    if not text or not text.strip():
        raise ValueError(f"{what}: expected a {noun} path, got an empty string")
    p = Path(text)
    if kind == "file" and text.endswith(("/", os.sep)):
        raise ValueError(f"{what}: {text!r} ends with a path separator; expected a file name")
    if os.path.lexists(p):
        if kind == "file":
            if p.is_dir():
                raise ValueError(f"{what}: {text!r} is an existing folder; expected a file name")
            if p.exists() and not stat.S_ISREG(p.stat().st_mode):
                raise ValueError(f"{what}: {text!r} exists and is not a regular file (writing would replace it)")
        elif not p.is_dir():
            raise ValueError(f"{what}: {text!r} exists and is not a folder")
    # the nearest existing ancestor (the folder itself for an existing output folder)
    probe = p if (kind == "dir" and p.is_dir()) else p.parent
    probe = Path(os.path.abspath(probe))
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what}: cannot create {text!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: cannot write {text!r}: {str(probe)!r} is not writable "
                              f"({_read_only_reason(probe)})")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` if the block succeeds.

    Use with writers that take a file name (``az.to_netcdf``, ``fig.savefig``). The temporary file keeps
    ``path``'s suffix so writers that dispatch on it still work. After a Ctrl-C (see
    :func:`mark_interrupted`) the rename is refused with ``KeyboardInterrupt``, leaving ``path`` as it was.

    Raises:
        ValueError / PermissionError: ``path`` cannot be written (see :func:`check_output_path`).
    """
    path = check_output_path(path, "path", "file")
    raise_if_interrupted()
    if _DISCARD:
        # the writer runs as usual (its own errors still surface), on a name with the target's suffix
        with tempfile.TemporaryDirectory(prefix="diffbio-prob-discard-") as folder:
            yield Path(folder) / path.name
            raise_if_interrupted()
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"path: cannot create {str(path)!r}: a parent is a file, not a folder") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        # mkstemp creates 0600; give the result the permissions a plain open() would (0666 minus the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        raise_if_interrupted()  # a Ctrl-C whose KeyboardInterrupt was swallowed must not replace the output
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise ValueError(f"path: {str(path)!r} is an existing folder; expected a file name") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` only when the block exits cleanly.

    Example:
        >>> with atomic_write("out.csv") as fh:  # doctest: +SKIP
        ...     fh.write("a,b\\n")
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
