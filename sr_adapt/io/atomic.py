"""The one way files are written: atomically, with the permissions of a normal file.

A crash or Ctrl-C never leaves a half-written file under the final name: content goes to a
temporary file in the same folder, which is renamed onto the target once complete. The file
then gets ``0666 & ~umask`` (0644 under the usual umask 022), like a file made by ``open``,
instead of the 0600 of a bare temporary file, so teammates sharing a machine can read
checkpoints, reports and images.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sr_adapt.errors import ConfigError, OutputError

__all__ = [
    "atomic_path", "atomic_torch_save", "atomic_write_json", "atomic_write_text", "check_writable", "show_path",
    "write_failure",
]


def show_path(path: str | os.PathLike) -> str:
    """``path`` for messages; relative paths also get their absolute form (Hydra may chdir)."""
    p = Path(path)
    return str(p) if p.is_absolute() else f"{p} (absolute: {p.absolute()})"


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; when the block succeeds it becomes ``path``.

    Parent folders are created. On an exception the temporary file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_failure(path, e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:  # e.g. an input the block was reading
            raise
        raise write_failure(path, e) from None
    except RuntimeError as e:  # torch's zip writer reports a full disk as "unexpected pos ..."
        if "unexpected pos" not in str(e) and "failed writing" not in str(e):
            raise
        raise write_failure(path, e) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def write_failure(path: Path, error: BaseException) -> OutputError:
    """An :class:`OutputError` for a failed write of ``path``, with the free space where it was going."""
    if isinstance(error, OutputError):
        return error
    folder = path.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    code = getattr(error, "errno", None)
    if isinstance(error, RuntimeError):
        why, fix = "the write stopped part-way (a full disk, or a network mount that went away)", "check the disk"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        why, fix = f"no permission ({os.strerror(code)})", "choose a folder you can write"
    elif code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < 64 * 2**20):
        why = "the disk quota is exhausted" if code == errno.EDQUOT else "the disk is full"
        fix = "free some space or write elsewhere"
    else:
        why, fix = (os.strerror(code) if code else str(error).splitlines()[0]), "check the path"
    room = f"; {free / 2**20:.0f} MiB free in {folder}" if free is not None else ""
    return OutputError(f"cannot write {show_path(path)}: {why}{room}; {fix}")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_writable(path: str | os.PathLike, key: str = "output") -> None:
    """:class:`ConfigError` naming ``key`` unless a file can be created at ``path`` (in it, when
    ``path`` is an existing folder).

    The nearest existing folder on the way is probed (folders that do not exist yet are
    created by the writers).
    """
    path = Path(path)
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={path}: {show_path(parent)} is a file, not a folder; choose another {key} path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sr_adapt_write_test.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"{key}={path}: cannot write in {show_path(parent)} ({e.strerror}); choose a writable {key} path"
        ) from None
