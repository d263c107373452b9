"""Object storage behind one small interface: a local directory by default, S3 (or any
S3-compatible server: MinIO, ...) through boto3 at scale.

Keys are '/'-separated relative names (`shop/versions/v1/model.ts`); a key that could escape
the store (`..`, an absolute path, a backslash, an empty part) is refused before any I/O.
Every write is atomic: locally a temporary sibling renamed into place, on S3 one PUT (or one
completed multipart upload), so a reader sees the old object or the new one, never half.
`put_if_absent` creates an object only when none is there (locally a hard link, which fails on an
existing name; on S3 a conditional PUT, `If-None-Match: *`): of two writers racing, one wins.
Credentials for S3 come only from the environment / boto3's chain, never from settings.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from shoprec.atomic import atomic_path, write_bytes
from shoprec.names import InvalidName

if TYPE_CHECKING:
    from shoprec.config import Settings

TMP_PREFIX = ".tmp-"  # shoprec.atomic's temporary siblings: never listed


class StorageError(RuntimeError):
    """The store cannot be used (unreachable, no bucket, access denied): one line."""


class ObjectNotFound(FileNotFoundError):
    """No object under that key (one line, the store's address of the key)."""


class InvalidKey(InvalidName):
    """An object key that could escape the store."""

    def __init__(self, key: object, why: str):
        self.kind, self.value = "object key", key
        shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
        ValueError.__init__(self, f"object key {shown} is not allowed ({why}): use relative "
                                  f"'/'-separated names")


def check_key(key: object) -> str:
    """`key` if it is a safe relative object key, else InvalidKey (one line)."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(key, "empty or not text")
    why = None
    if key.startswith("/") or (len(key) > 1 and key[1] == ":"):
        why = "absolute"
    elif "\\" in key:
        why = "backslash"
    elif any(ord(c) < 32 or c == "\x7f" for c in key):
        why = "control character"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        why = "empty, '.' or '..' part"
    if why:
        raise InvalidKey(key, why)
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix: '' (everything) or a key, optionally ending in '/'."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class Store(Protocol):
    """What the registry needs from object storage."""

    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_if_absent(self, key: str, data: bytes) -> bool: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_file(self, key: str, dest: Path) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str = "") -> str: ...


class LocalStore:
    """Objects as files under `root` (default: `Settings.model_registry()`)."""

    def __init__(self, root: Path):
        self.directory = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.directory)!r})"

    def uri(self, key: str = "") -> str:
        return (self._path(key) if key else self.directory).as_uri()

    def _path(self, key: str) -> Path:
        path = self.directory.joinpath(*check_key(key).split("/"))
        # a symlink inside the store must not lead out of it either
        if not path.resolve().is_relative_to(self.directory):
            raise InvalidKey(key, f"it leads outside {self.directory}")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        for attempt in (1, 2):  # a concurrent delete may prune the fresh parent folder once
            try:
                write_bytes(path, bytes(data))
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object whole unless one is there: True when this call created it."""
        path = self._path(key)
        for attempt in (1, 2):  # a concurrent delete may prune the fresh parent folder once
            try:
                with atomic_path(path, replace=False) as tmp:  # link(2): atomic create-only
                    tmp.write_bytes(bytes(data))
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def put_file(self, key: str, path: Path) -> None:
        with atomic_path(self._path(key)) as tmp:
            shutil.copyfile(path, tmp)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {self.uri(key)}") from None

    def get_file(self, key: str, dest: Path) -> Path:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFound(f"no object {self.uri(key)}")
        with atomic_path(Path(dest)) as tmp:
            try:
                shutil.copyfile(src, tmp)
            except FileNotFoundError:  # deleted meanwhile
                raise ObjectNotFound(f"no object {self.uri(key)}") from None
        return Path(dest)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix` (a plain string prefix, as on S3), sorted."""
        _check_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        base = self._path(head) if head else self.directory
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
            rel = Path(dirpath).relative_to(self.directory).as_posix()
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove an object (absent: nothing to do) and the folders it leaves empty."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.directory and parent.is_relative_to(self.directory):
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone): stop here
                break
            parent = parent.parent


@functools.lru_cache(maxsize=8)
def _client(endpoint_url: str | None, region: str | None):
    """One boto3 client per endpoint and process (thread-safe; creating one costs ~0.1 s of
    JSON model loading). Credentials are read once, from the environment / boto3's chain."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=5, read_timeout=60,
                    s3={"addressing_style": "path"} if endpoint_url else None)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region,
                                          config=config)


class S3Store:
    """Objects in an S3 bucket under `prefix` (boto3; credentials from the environment)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, client=None):

        if not bucket or "/" in bucket:
            raise StorageError(f"S3 bucket {bucket!r} is not a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.endpoint_url = endpoint_url
        self.client = client or _client(endpoint_url, region)

    def __repr__(self) -> str:
        return f"S3Store({self.uri()!r})"

    def uri(self, key: str = "") -> str:
        full = self._key(key) if key else self.prefix
        return f"s3://{self.bucket}/{full}" if full else f"s3://{self.bucket}"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, key: str = "") -> Iterator[None]:
        """boto3's exceptions as ObjectNotFound / StorageError, one line each."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(f"no object {self.uri(key)}") from None
            msg = str(err.get("Message") or "").strip().splitlines()[:1]
            raise StorageError(f"{self.uri(key)}: S3 refused ({code or 'error'}"
                               f"{': ' + msg[0] if msg else ''})") from None
        except BotoCoreError as e:  # no credentials, endpoint unreachable, ...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise StorageError(f"{self.uri(key)}: {first}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional PUT (`If-None-Match: *`, S3 since 2024, MinIO, moto >= 5.0.15): False
        when the object exists (412) or another conditional write of it is in flight (409). A
        server that ignores the header would let both writers win: the registry re-reads what it
        wrote before relying on it."""
        from botocore.exceptions import ClientError

        with self._errors(key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key),
                                       Body=bytes(data), IfNoneMatch="*")
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in ("PreconditionFailed", "ConditionalRequestConflict") \
                        or status in (409, 412):
                    return False
                raise
        return True

    def put_file(self, key: str, path: Path) -> None:
        with self._errors(key):  # multipart above 8 MB: the object appears when complete
            self.client.upload_file(str(path), self.bucket, self._key(key))

    def get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def get_file(self, key: str, dest: Path) -> Path:
        with atomic_path(Path(dest)) as tmp, self._errors(key):
            self.client.download_file(self.bucket, self._key(key), str(tmp))
        return Path(dest)

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full)
            for page in pages:
                keys += [o["Key"][cut:] for o in page.get("Contents", [])]
        return sorted(keys)

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def store_from_settings(settings: Settings) -> LocalStore | S3Store:
    """The registry's store: S3 when `registry.bucket` is set (or `storage_uri` is s3://...,
    then under its `registry/` as `Settings.uri()` maps it), else the local directory."""
    r = settings.registry
    endpoint = r.endpoint_url or settings.s3_endpoint_url
    if r.bucket:
        return S3Store(r.bucket, r.prefix, endpoint_url=endpoint, region=r.region)
    uri = settings.uri(settings.model_registry())
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return S3Store(bucket, prefix, endpoint_url=endpoint, region=r.region)
    return LocalStore(settings.model_registry())


def ensure_bucket(settings: Settings) -> str:
    """Create the bucket of `storage_uri` (and of `registry.bucket`) unless it exists: a
    cluster's first start (infra/docker-compose.yaml's minio-init). Returns what it did."""
    import boto3
    from botocore.exceptions import ClientError

    endpoint = settings.registry.endpoint_url or settings.s3_endpoint_url
    root = settings.storage_root()
    buckets = {b for b in (root.removeprefix("s3://").split("/")[0] if root else None,
                           settings.registry.bucket) if b}
    if not buckets:
        return "no bucket configured (SHOPREC_STORAGE_URI unset): the local directory is used"
    client = boto3.session.Session().client("s3", endpoint_url=endpoint,
                                            region_name=settings.registry.region)
    done = []
    for bucket in sorted(buckets):
        try:
            client.head_bucket(Bucket=bucket)
            done.append(f"{bucket}: exists")
        except ClientError:
            client.create_bucket(Bucket=bucket)
            done.append(f"{bucket}: created")
    return "; ".join(done)


if __name__ == "__main__":  # python -m shoprec.storage ensure-bucket
    import sys

    from shoprec.config import get_settings

    if sys.argv[1:] != ["ensure-bucket"]:
        raise SystemExit("usage: python -m shoprec.storage ensure-bucket")
    print(ensure_bucket(get_settings()))
