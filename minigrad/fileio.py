"""Writing files so that nothing is lost: the one atomic-write helper of the library.

A file is written to a hidden temporary file in the same folder and renamed over the target
only when the write succeeded, so a reader (or a crash) never sees half a file and an old file
survives a failed write. Used by checkpoints (:mod:`minigrad.nn`), the MNIST cache
(:mod:`minigrad.data`) and the results store (:mod:`minigrad.experiments`).
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator


def new_temp_file(directory: Path, name: str) -> tuple[int, Path]:
    """Create a hidden temporary file for ``directory / name``; return (fd, path).

    Unlike ``tempfile.mkstemp`` (mode 0600), the mode follows the umask, as for any file the
    user writes, so that a shared folder stays readable by the others.
    """
    path = Path(directory) / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return os.open(path, flags, 0o666), path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` in one rename.

    A missing folder is reported with the folder the caller named (not the temporary file's
    name); on any error the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: the folder {directory} does not exist; create it first "
            f"(e.g. os.makedirs({str(directory)!r}))"
        )
    fd, tmp = new_temp_file(directory, path.name)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
