"""Object storage: the same behaviour from a local directory and from S3 (a real moto server
process on loopback, not a Python mock), and no key escapes the store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from shoprec.config import Settings
from shoprec.names import InvalidName
from shoprec.storage import LocalStore, ObjectNotFound, S3Store, StorageError, store_from_settings
from tests.scaled import running_moto_server  # noqa: F401 - test_registry imports it here


def new_s3_store(endpoint: str, prefix: str = "registry") -> S3Store:
    """A fresh bucket per test: no state shared between tests."""
    store = S3Store(f"t-{uuid.uuid4().hex[:16]}", prefix, endpoint_url=endpoint)
    store.client.create_bucket(Bucket=store.bucket)
    return store


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return new_s3_store(request.getfixturevalue("s3_endpoint"))


def test_put_get_exists_list_delete(store, tmp_path):
    assert store.list() == [] and not store.exists("a/b.txt")
    store.put_bytes("a/b.txt", b"one")
    store.put_bytes("a/b.txt", b"two")  # replaced whole
    store.put_bytes("a/c/d.bin", b"\x00" * 10)
    store.put_bytes("ab.txt", b"x")
    assert store.get_bytes("a/b.txt") == b"two" and store.exists("a/b.txt")
    assert store.list() == ["a/b.txt", "a/c/d.bin", "ab.txt"]
    assert store.list("a/") == ["a/b.txt", "a/c/d.bin"]
    assert store.list("a") == ["a/b.txt", "a/c/d.bin", "ab.txt"]  # a string prefix, as on S3
    assert store.list("a/c/d") == ["a/c/d.bin"] and store.list("zz/") == []
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3000))
    store.put_file("f/src.bin", src)
    out = store.get_file("f/src.bin", tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == src.read_bytes()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]
    store.delete("a/b.txt")
    store.delete("a/b.txt")  # absent: nothing to do
    assert not store.exists("a/b.txt") and store.list("a/") == ["a/c/d.bin"]
    with pytest.raises(ObjectNotFound, match="a/b.txt"):
        store.get_bytes("a/b.txt")
    with pytest.raises(ObjectNotFound, match="nope"):
        store.get_file("nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a\\b", "a//b", "", "a/",
                                 "./a", "a/./b", "a/\nb"])
def test_keys_that_could_escape_are_refused(store, key):
    for call in (lambda: store.put_bytes(key, b"x"), lambda: store.get_bytes(key),
                 lambda: store.exists(key), lambda: store.delete(key)):
        with pytest.raises(InvalidName, match="object key"):
            call()
    assert store.list() == []


def test_local_store_writes_atomically_and_stays_inside(tmp_path):
    store = LocalStore(tmp_path / "root")
    store.put_bytes("a/b", b"x")
    # a crashed writer's temporary is never listed
    (tmp_path / "root" / "a" / ".tmp-b-deadbeef").write_bytes(b"half")
    assert store.list() == ["a/b"]
    # a symlink inside the store does not lead out of it
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(InvalidName, match="outside"):
        store.put_bytes("link/x", b"x")
    assert not (tmp_path / "outside" / "x").exists()
    store.delete("a/b")  # empty folders go with the last object
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["a", "link"]


def test_store_from_settings(tmp_path):
    local = store_from_settings(Settings(home=tmp_path, storage_uri=None))  # the default
    assert isinstance(local, LocalStore)
    assert local.directory == Settings(home=tmp_path).model_registry()
    s3 = store_from_settings(Settings(home=tmp_path, registry={"bucket": "b", "prefix": "p/q"}))
    assert isinstance(s3, S3Store) and s3.uri("x") == "s3://b/p/q/x"
    by_uri = store_from_settings(Settings(home=tmp_path, storage_uri="s3://lake/shoprec"))
    assert isinstance(by_uri, S3Store) and by_uri.uri("x") == "s3://lake/shoprec/registry/x"
    # one bucket shared by several homes: {home_id} keeps them apart
    a, b = (Settings(home=tmp_path / n, storage_uri="s3://lake/{home_id}") for n in "ab")
    assert store_from_settings(a).uri() == f"s3://lake/{a.home_id}/registry" != \
        store_from_settings(b).uri()
    with pytest.raises(ValueError, match="s3://bucket"):
        Settings(home=tmp_path, storage_uri="/data/lake")


def test_unreachable_bucket_is_one_line(s3_endpoint):
    store = S3Store(f"missing-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint)
    with pytest.raises(StorageError, match=r"NoSuchBucket") as e:
        store.put_bytes("a", b"x")
    assert "\n" not in str(e.value)



def test_put_if_absent_creates_only_once(store):
    assert store.put_if_absent("c/claim.json", b"first")
    assert not store.put_if_absent("c/claim.json", b"second")
    assert store.get_bytes("c/claim.json") == b"first"
    # writers racing for one key: exactly one wins, and its bytes are the object's
    import threading

    for i in range(5):
        barrier, won = threading.Barrier(4), []

        def claim(n: int, i: int = i, barrier: threading.Barrier = barrier,
                  won: list = won) -> None:
            barrier.wait()
            if store.put_if_absent(f"race/{i}", f"writer {n}".encode()):
                won.append(n)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1 and store.get_bytes(f"race/{i}") == f"writer {won[0]}".encode()
    assert not [k for k in store.list() if ".tmp-" in k]
    with pytest.raises(InvalidName, match="object key"):
        store.put_if_absent("../x", b"x")
