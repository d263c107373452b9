"""The forget log: one JSON line per step of a request, the user only as their HMAC. A request
is `started` before anything is removed (so re-deliveries are filtered from then on, and a killed
forget is known to be unfinished) and `done` with the counts of what was removed where."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path

from shoprec.config import Settings


def append(settings: Settings, dataset: str, rec: dict) -> None:
    path = settings.forget_log(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), **rec}) + "\n"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def records(settings: Settings, dataset: str) -> list[dict]:
    path: Path = settings.forget_log(dataset)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            if n == len(path.read_text().splitlines()):  # a line cut by a crash: the last one
                continue
            raise ValueError(f"{path}:{n}: not a JSON line (the forget log is append-only; "
                             "restore it from a backup)") from None
    return out


def forgotten(settings: Settings, dataset: str) -> set[str]:
    """HMACs of every user whose forget was requested (done or not)."""
    return {r["user"] for r in records(settings, dataset)}


def unfinished(settings: Settings, dataset: str) -> set[str]:
    """HMACs whose last record is not `done`: a forget that was killed or left something."""
    last = {r["user"]: r for r in records(settings, dataset)}
    return {u for u, r in last.items() if r["status"] != "done"}


class Forgotten:
    """The forgotten users of a dataset for a long-running process (serving): the log re-read
    only when it changed (one stat per call), each id hashed only while someone is forgotten."""

    def __init__(self, settings: Settings, dataset: str):
        self.settings, self.dataset = settings, dataset
        self._seen: tuple[int, int] | None = None
        self._hmacs: set[str] = set()
        self._key: bytes | None = None

    def _current(self) -> set[str]:
        try:
            st = self.settings.forget_log(self.dataset).stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._seen:
            self._hmacs = forgotten(self.settings, self.dataset) if stamp != (0, 0) else set()
            self._seen = stamp
        return self._hmacs

    def __contains__(self, user_id: str) -> bool:
        from shoprec.privacy.identity import key, user_hmac

        hmacs = self._current()
        if not hmacs:
            return False
        if self._key is None:
            self._key = key(self.settings)
        return user_hmac(self._key, user_id) in hmacs
