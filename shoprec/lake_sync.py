"""The lake on object storage: when `storage_uri` is s3://..., a dataset's lake (its landing,
validated and quarantine zones, the validation ledger, the arrival counter, the rebuild marker)
lives in the bucket under `<storage_uri>/lake/<dataset>/`, and the home holds a working copy.

Every stage that reads or writes the lake runs inside `session()`. A session takes the
dataset's lease, an object created with a conditional PUT (`If-None-Match: *`) so that one
process on one machine at a time changes the lake, as the local file locks do on one machine;
then it brings the working copy up to date (pull). A reader releases the lease at once and
works on what it pulled, a consistent state: writers only change the bucket under the lease. A
writer keeps the lease, renewed in the background, until its changes are uploaded (push).

Pull and push compare with a manifest of the last agreed state (key -> size, mtime, ETag), so
only what changed moves. A change made on this machine and not yet pushed (a killed process)
is pushed by the next session; a change made elsewhere since the last agreed state wins over
a local one. DuckDB's httpfs extension is not in the pinned wheel and nothing may download it,
so DuckDB, dbt and GX read the working copy; boto3 moves the bytes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from shoprec.atomic import write_text
from shoprec.config import Settings, get_settings
from shoprec.storage import TMP_PREFIX, S3Store, StorageError

LEASE = "_lease.json"  # in the bucket only
MANIFEST = ".sync-manifest.json"  # in the working copy only (Settings.lake_sync_manifest)
LEASE_SECONDS = 120.0  # renewed every third of this while held; a dead holder on another
# machine blocks the lake this long at most (one on this machine: not at all, see Lease)
TRANSFERS = 8  # objects moved at once
WAIT_SECONDS = 1800.0  # how long a session waits for another holder's lease

F = TypeVar("F", bound=Callable)
_local = threading.local()  # .held: {(bucket uri, dataset): depth} of this thread


class LakeBusy(StorageError):
    """Another process held the dataset's lease for longer than a session waits."""


def lake_store(settings: Settings, dataset: str | None = None) -> S3Store | None:
    """The dataset's lake in the bucket (None: the lake is the local directory only)."""
    root = settings.storage_root()
    if not root:
        return None
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    ds = settings.lake(dataset).name
    return S3Store(bucket, "/".join(p for p in (prefix, "lake", ds) if p),
                   endpoint_url=settings.s3_endpoint_url)


def _syncable(rel: str) -> bool:
    parts = rel.split("/")
    return rel != MANIFEST and rel != LEASE and not any(p.startswith(TMP_PREFIX) for p in parts)


def _local_files(base: Path) -> dict[str, os.stat_result]:
    out = {}
    if not base.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(base).as_posix()
            if _syncable(rel) and not path.is_symlink():
                out[rel] = path.stat()
    return out


@dataclass
class Synced:
    """What one pull or push moved."""

    downloaded: int = 0
    uploaded: int = 0
    deleted: int = 0
    bytes: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)


class WorkingCopy:
    """The home's copy of one dataset's lake and its manifest of the last agreed state."""

    def __init__(self, settings: Settings, dataset: str | None, store: S3Store):
        self.base = settings.lake(dataset)
        self.store = store
        self.manifest_path = settings.lake_sync_manifest(dataset)
        self.where = store.uri()
        try:
            saved = json.loads(self.manifest_path.read_text())
        except (FileNotFoundError, ValueError):
            saved = {}
        # agreed with another lake (a copied home, a changed storage_uri): nothing is agreed
        # here, so every local file counts as a local change and none is deleted by a pull
        ok = isinstance(saved, dict) and saved.get("remote") == self.where
        self.manifest: dict[str, list] = dict(saved.get("files", {})) if ok else {}

    def _save(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        write_text(self.manifest_path, json.dumps({"remote": self.where, "files": self.manifest},
                                                  sort_keys=True))

    def remote(self) -> dict[str, tuple[int, str]]:
        client, out = self.store.client, {}
        full = self.store.prefix + "/"
        with self.store._errors():
            for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.store.bucket, Prefix=full):
                for o in page.get("Contents", []):
                    rel = o["Key"][len(full):]
                    if _syncable(rel):
                        out[rel] = (int(o["Size"]), str(o["ETag"]))
        return out

    def _unchanged(self, rel: str, st: os.stat_result) -> bool:
        m = self.manifest.get(rel)
        return m is not None and m[0] == st.st_size and m[1] == st.st_mtime_ns

    def pull(self) -> Synced:
        """Bring changes made elsewhere since the last agreed state into the working copy."""
        t0, out = time.monotonic(), Synced()
        remote, local = self.remote(), _local_files(self.base)
        wanted = []
        for rel, (size, etag) in sorted(remote.items()):
            m = self.manifest.get(rel)
            if m is not None and m[2] == etag:
                continue  # nobody changed it remotely: the local state (maybe newer) stands
            if m is None and rel in local and local[rel].st_size == size and \
                    md5(self.base / rel) == etag.strip('"'):
                self.manifest[rel] = [size, local[rel].st_mtime_ns, etag]  # same bytes
                continue
            wanted.append(rel)

        def get(rel: str) -> os.stat_result:
            path = self.base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(rel, path)
            return path.stat()

        for rel, st in zip(wanted, _parallel(get, wanted), strict=True):
            self.manifest[rel] = [st.st_size, st.st_mtime_ns, remote[rel][1]]
            out.downloaded, out.bytes = out.downloaded + 1, out.bytes + st.st_size
            out.keys.append(rel)
        for rel in sorted(set(self.manifest) - set(remote)):  # removed elsewhere
            (self.base / rel).unlink(missing_ok=True)
            _prune(self.base / rel, self.base)
            del self.manifest[rel]
            out.deleted += 1
        self._save()
        out.seconds = time.monotonic() - t0
        return out

    def push(self) -> Synced:
        """Upload what changed here since the last agreed state; delete what was removed."""
        t0, out = time.monotonic(), Synced()
        local = _local_files(self.base)
        changed = [rel for rel, st in sorted(local.items()) if not self._unchanged(rel, st)]

        def put(rel: str) -> str:
            with self.store._errors(rel), (self.base / rel).open("rb") as fh:
                return str(self.store.client.put_object(
                    Bucket=self.store.bucket, Key=self.store._key(rel), Body=fh)["ETag"])

        for rel, etag in zip(changed, _parallel(put, changed), strict=True):
            st = local[rel]
            self.manifest[rel] = [st.st_size, st.st_mtime_ns, etag]
            out.uploaded, out.bytes = out.uploaded + 1, out.bytes + st.st_size
            out.keys.append(rel)
        gone = sorted(set(self.manifest) - set(local))  # removed here
        list(_parallel(self.store.delete, gone))
        for rel in gone:
            del self.manifest[rel]
        out.deleted = len(gone)
        self._save()
        out.seconds = time.monotonic() - t0
        return out


def _parallel(fn: Callable, items: list) -> list:
    """`fn` over `items` on TRANSFERS threads (boto3's client is thread-safe), in order."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(TRANSFERS, len(items))) as pool:
        return list(pool.map(fn, items))


def md5(path: Path) -> str:
    import hashlib

    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _prune(path: Path, base: Path) -> None:
    parent = path.parent
    while parent != base and parent.is_relative_to(base):
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


class Lease:
    """The dataset's lease object: taken with a conditional PUT, renewed while held, broken by
    the next taker once expired (its holder died without releasing it)."""

    def __init__(self, store: S3Store, ttl: float = LEASE_SECONDS):
        self.store, self.ttl = store, ttl
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"holder": self.token, "expires": time.time() + self.ttl}).encode()

    def acquire(self, wait: float = WAIT_SECONDS) -> None:
        deadline = time.monotonic() + wait
        while not self.store.put_if_absent(LEASE, self._body()):
            try:
                held = json.loads(self.store.get_bytes(LEASE))
            except (FileNotFoundError, ValueError):
                continue  # released (or half-read) meanwhile: try again at once
            if float(held.get("expires", 0)) < time.time() or _dead_here(held.get("holder")):
                self.store.delete(LEASE)  # its holder is gone
                continue
            if time.monotonic() > deadline:
                raise LakeBusy(f"{self.store.uri(LEASE)}: held by {held.get('holder')} for "
                               f"over {wait:.0f} s; wait, or delete it if that process is gone")
            time.sleep(0.2)
        self._renewer = threading.Thread(target=self._renew, daemon=True, name="lake-lease")
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with contextlib.suppress(StorageError):
                self.store.put_bytes(LEASE, self._body())

    def release(self) -> None:
        self._stop.set()
        if self._renewer:
            self._renewer.join()
        with contextlib.suppress(StorageError, FileNotFoundError):
            held = json.loads(self.store.get_bytes(LEASE))
            if held.get("holder") == self.token:
                self.store.delete(LEASE)


def _dead_here(holder: object) -> bool:
    """The holder ran on this machine and its process is gone (killed: no release)."""
    host, _, rest = str(holder).partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextlib.contextmanager
def session(settings: Settings | None = None, dataset: str | None = None, *,
            write: bool = True) -> Iterator[None]:
    """Run a lake stage on an up-to-date working copy (see the module's docstring). Nested
    sessions of the same dataset in this process (forget -> transform) join the outer one."""
    settings = settings or get_settings()
    root = settings.storage_root()
    if root is None:
        yield
        return
    key = (root, settings.lake(dataset).name)
    held = _local.__dict__.setdefault("held", {})
    depth = held.get(key, 0)
    held[key] = depth + 1
    try:
        if depth:
            yield
            return
        store = lake_store(settings, dataset)
        copy = WorkingCopy(settings, dataset, store)
        lease = Lease(store)
        lease.acquire()
        try:
            copy.pull()
            if not write:
                lease.release()
                lease = None
            yield
            if lease is not None:
                copy.push()
        finally:
            if lease is not None:
                lease.release()
    finally:
        held[key] -= 1
        if not held[key]:
            del held[key]


def sync_now(settings: Settings, dataset: str | None = None) -> tuple[Synced, Synced] | None:
    """`shoprec lake sync`: pull what changed elsewhere, push what this home has not pushed
    yet (a killed task's changes), under the lease. None when the lake is local only."""
    store = lake_store(settings, dataset)
    if store is None:
        return None
    copy = WorkingCopy(settings, dataset, store)
    lease = Lease(store)
    lease.acquire()
    try:
        return copy.pull(), copy.push()
    finally:
        lease.release()


def synced(write: bool = True) -> Callable[[F], F]:
    """Decorate a lake stage taking `settings` and `dataset` arguments: it runs in a session."""

    def deco(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            call = sig.bind_partial(*args, **kwargs)
            call.apply_defaults()
            bound = call.arguments
            with session(bound.get("settings"), bound.get("dataset"), write=write):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco
