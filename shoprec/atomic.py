"""Write to a temporary sibling, then rename into place: a reader sees the old file or the new
one, never half of one, and a crash leaves only a hidden `.tmp-*` behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path, *, directory: bool = False, replace: bool = True,
                durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success rename it to `final`.

    `directory`: the temporary path is a fresh directory. `replace=False` refuses to overwrite
    (the rename fails if `final` exists, so two writers cannot both win). `durable` fsyncs the
    directory before the rename. On an exception the temporary path is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if durable and directory:
            fsync_dir(tmp)
        if replace:
            os.replace(tmp, final)
        elif directory:
            if final.exists() and any(final.iterdir()):
                raise FileExistsError(f"{final} already exists")
            os.rename(tmp, final)  # an empty `final` is replaced, a full one refused
        else:
            os.link(tmp, final)  # fails when `final` exists
            tmp.unlink()
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_bytes(final: Path, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return final


def write_text(final: Path, text: str) -> Path:
    return write_bytes(final, text.encode())
