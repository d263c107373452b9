"""The lake on object storage (a moto S3 server process on loopback): two homes standing for two
machines share one `storage_uri`; what one lands, validates or retracts, the other sees, and
its dbt build gives the same warehouse; the lease lets one writer at a time change the lake."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import duckdb
import pytest

from shoprec.config import Settings
from shoprec.lake import list_batches
from shoprec.lake_sync import LEASE, LakeBusy, Lease, lake_store, session
from tests.scaled import running_moto_server


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def machines(tmp_path, s3_endpoint, monkeypatch):
    """Two homes (machines) on one bucket; the environment of neither is on S3 (explicit)."""
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    for k in ("SHOPREC_STORAGE_URI", "SHOPREC_FEAST__ONLINE_STORE", "SHOPREC_FEAST__PROJECT"):
        monkeypatch.delenv(k, raising=False)
    return tuple(Settings(home=tmp_path / name, storage_uri=f"s3://{bucket}/prod",
                          s3_endpoint_url=s3_endpoint) for name in ("a", "b"))


def _names(zone: str, s: Settings) -> list[str]:
    return sorted(d.name for d in list_batches(zone, settings=s))


def _events(s: Settings) -> tuple:
    with duckdb.connect(str(s.internal_snapshot()), read_only=True) as con:
        return con.execute("select count(*), sum(hash(event_id)) from marts.fct_events").fetchone()


def test_two_machines_share_the_lake_through_the_bucket(machines):
    from shoprec.lifecycle import retract
    from shoprec.simulate import simulate
    from shoprec.transform import transform
    from shoprec.validation import validate

    a, b = machines
    simulate("tiny", seed=5, days=4, settings=a)
    keys = lake_store(a).list()
    assert any(k.startswith("landing/") and k.endswith("events.parquet") for k in keys)
    assert LEASE not in keys  # released

    results = validate(settings=b, workers=1)  # machine b judges what a landed
    assert results and all(r.ok for r in results)
    keys = lake_store(a).list()
    assert not [k for k in keys if k.startswith("landing/")]
    assert "_validation_ledger.jsonl" in keys and any(k.startswith("validated/") for k in keys)

    transform(settings=a)  # a pulls b's verdicts before dbt reads the zone
    assert _names("validated", a) == _names("validated", b) != []
    assert _names("landing", a) == []
    transform(settings=b)
    assert _events(a) == _events(b) and _events(a)[0] > 0

    victim = _names("validated", a)[0]
    retract(victim, "wrong prices", settings=a)
    with session(b, write=False):  # a pull alone
        pass
    assert victim in _names("quarantine", b) and victim not in _names("validated", b)
    assert json.loads(lake_store(a).get_bytes("_rebuild_needed.json"))

    # a change made here and never pushed (a killed process) is pushed by the next session
    stray = a.zone("landing") / "late" / "events.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes((a.zone("validated") / _names("validated", a)[0] / "events.parquet")
                      .read_bytes())
    with session(a):
        pass
    assert "landing/late/events.parquet" in lake_store(a).list()
    with session(b, write=False):
        pass
    assert (b.zone("landing") / "late" / "events.parquet").read_bytes() == stray.read_bytes()


def test_the_lease_admits_one_writer_and_expires(machines):
    a, b = machines
    store = lake_store(a)
    holder = Lease(store, ttl=60)
    holder.acquire()
    try:
        waiter = Lease(lake_store(b), ttl=60)
        t0 = time.monotonic()
        with pytest.raises(LakeBusy, match="held by .* wait, or delete it"):
            waiter.acquire(wait=0.5)
        assert time.monotonic() - t0 < 5
        got = []
        thread = threading.Thread(target=lambda: (waiter.acquire(wait=30), got.append(1)))
        thread.start()
        time.sleep(0.5)
        assert not got  # still held
    finally:
        holder.release()
    thread.join(10)
    assert got == [1]
    waiter.release()
    # a holder that died: its lease expires and the next session breaks it
    store.put_bytes(LEASE, json.dumps({"holder": "gone:1", "expires": time.time() - 1}).encode())
    with session(b):
        pass
    assert not store.exists(LEASE)


def test_without_storage_uri_nothing_talks_to_s3(tmp_path, monkeypatch):
    monkeypatch.delenv("SHOPREC_STORAGE_URI", raising=False)
    s = Settings(home=tmp_path / "h", storage_uri=None)
    assert lake_store(s) is None
    with session(s):
        pass
    assert not (s.lake() / ".sync-manifest.json").exists()


def test_the_privacy_audit_searches_the_bucket(machines):
    """`privacy find` on a lake in S3: objects byte-identical to the working copy were searched
    there; one that is not (here: a working copy that lost its file) is searched in the bucket."""
    import pyarrow.parquet as pq

    from shoprec.privacy.find import find_user
    from shoprec.simulate import simulate

    a, _ = machines
    simulate("tiny", seed=5, days=2, settings=a)
    batch = a.zone("landing") / _names("landing", a)[0]
    user = pq.read_table(batch / "events.parquet").column("user_id")[0].as_py()
    hits = find_user(a, "shop", user)
    assert hits and not [p for p in hits if p.startswith("s3://")]
    (batch / "events.parquet").unlink()
    hits = find_user(a, "shop", user)
    remote = [p for p in hits if p.startswith("s3://")]
    assert remote == [lake_store(a).uri(f"landing/{batch.name}/events.parquet")]


def test_a_copied_home_keeps_its_files_and_pushes_them(machines, tmp_path):
    """A home copied with its sync manifest onto another lake (another prefix): the manifest
    agreed with the first lake, so the copy's files are local changes, pushed, never deleted."""
    import shutil

    from shoprec.simulate import simulate

    a, _ = machines
    simulate("tiny", seed=5, days=2, settings=a)
    copy = Settings(home=tmp_path / "copy", storage_uri=a.storage_uri.replace("/prod", "/copy"),
                    s3_endpoint_url=a.s3_endpoint_url)
    shutil.copytree(a.home, copy.home)
    assert _names("landing", copy) == _names("landing", a) != []
    with session(copy):
        pass
    assert _names("landing", copy) == _names("landing", a)
    assert sorted(lake_store(copy).list()) == sorted(lake_store(a).list())
