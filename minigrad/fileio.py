"""Writing files so that nothing is lost: the one atomic-write helper of the library.

A file is written to a hidden temporary file in the same folder and renamed over the target
only when the write succeeded, so a reader (or a crash) never sees half a file and an old file
survives a failed write. Used by checkpoints (:mod:`minigrad.nn`), the MNIST cache
(:mod:`minigrad.data`) and the results store (:mod:`minigrad.experiments`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
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


class UnreadableFile(ValueError):
    """A file of the library's own (results, history) that is truncated or corrupt."""


def read_json(path: str | os.PathLike, what: str = "JSON file", fix: str = "") -> object:
    """The JSON value in ``path``; a truncated or corrupt file raises :class:`UnreadableFile`
    naming the file (and ``fix``, how to get past it) instead of a bare JSONDecodeError."""
    path = Path(path)
    try:
        with open(path, encoding="utf8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnreadableFile(f"{path} is not a readable {what} (truncated or corrupt?): "
                             f"{e}{'; ' + fix if fix else ''}") from None


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def remove_temp_files(directory: str | os.PathLike, names: tuple[str, ...] = ()) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left in ``directory``.

    Only files named as :func:`new_temp_file` names them, for one of ``names`` (all when
    empty), whose writer is no longer running on this machine (or is this process: a
    folder's writes happen one at a time). Returns the files removed.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _TEMP.match(path.name)
        if not match or names and match["name"] not in names:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _alive(pid):
            continue
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
