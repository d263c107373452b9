"""Shared fixtures: every test gets its own SHOPREC_HOME so runs never share state."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoprec.children import free_port  # noqa: F401 - the tests import it from here
from shoprec.config import Settings, reset_settings_cache

ROOT = Path(__file__).resolve().parent.parent
# Airflow reads its configuration at import: point it at a throwaway home before any test runs.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="shoprec-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")

# SHOPREC_SCALED=1: the whole suite against S3 (moto's server), Redis and PostgreSQL on loopback
from tests import scaled  # noqa: E402

_SCALED = scaled.start(Path(tempfile.mkdtemp(prefix="shoprec-scaled-"))) \
    if scaled.enabled() else None


def pytest_report_header(config) -> str:
    if _SCALED is None:
        return "shoprec: default mode (local lake and registry, SQLite online store)"
    keys = ("SHOPREC_STORAGE_URI", "SHOPREC_S3_ENDPOINT_URL", "SHOPREC_FEAST__REDIS_CONNECTION")
    return "shoprec: SCALED mode: " + ", ".join(f"{k}={os.environ[k]}" for k in keys)


def pytest_unconfigure(config) -> None:
    if _SCALED is not None:
        _SCALED.close()


@pytest.fixture
def shoprec_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SHOPREC_HOME", str(home))
    reset_settings_cache()
    yield home
    reset_settings_cache()


@pytest.fixture
def settings(shoprec_home: Path) -> Settings:
    return Settings(home=shoprec_home)


@pytest.fixture(scope="session")
def tiny_shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The tiny simulated shop, landed once per test session (read-only for tests)."""
    from shoprec.simulate import simulate

    s = Settings(home=tmp_path_factory.mktemp("tiny-shop"))
    simulate("tiny", seed=7, settings=s)
    return s


@pytest.fixture(scope="session")
def built_shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The tiny shop (seed 3, 20 days) validated, built by dbt and materialized in Feast (SQLite,
    default project) once per session, for every integration test that only reads it. A test
    that writes (its own Feast project, training runs) must not change what others read."""
    from shoprec.features.materialize import materialize
    from shoprec.simulate import simulate
    from shoprec.transform import transform
    from shoprec.validation import validate

    s = Settings(home=tmp_path_factory.mktemp("built-shop"))
    simulate("tiny", seed=3, days=20, settings=s)
    assert all(r.ok for r in validate(settings=s, workers=1))
    transform(settings=s)
    materialize(settings=s)
    return s


def copy_published_warehouse(src: Settings, dst: Settings, dataset: str = "shop") -> None:
    """Give `dst` the analysts' snapshot of `src` (a few MB), for a test that needs a Feast
    registry of its own: tearing a store down deletes its whole registry file."""
    import shutil

    shutil.copytree(src.warehouse_snapshots(), dst.warehouse_snapshots())
    shutil.copytree(src.analysts_snapshots(), dst.analysts_snapshots())
    dst.internal_snapshot(dataset).symlink_to(os.readlink(src.internal_snapshot(dataset)))
    dst.analytics_snapshot(dataset).symlink_to(os.readlink(src.analytics_snapshot(dataset)))


# ----------------------------------------------- bring your own data: only what the contract needs

BYOD_DAY = "2026-01-05"


def nullable(kind: str):
    """The contract schema of `kind` with every column nullable: what a shop may leave empty."""
    import pyarrow as pa

    from shoprec.contract import SCHEMAS

    return pa.schema([f.with_nullable(True) for f in SCHEMAS[kind]])


def byod_tables() -> dict:
    """A shop's export with nothing optional: events without session_id, price or quantity
    (u1's 29-minute gap stays in one session, the 31-minute one starts another); a catalogue
    of ids only; no users at all."""
    import datetime as dt

    import pyarrow as pa

    day = dt.datetime.fromisoformat(f"{BYOD_DAY}T00:00:00+00:00")

    def at(hh: int, mm: int) -> dt.datetime:
        return day + dt.timedelta(hours=hh, minutes=mm)

    events = [("e1", "u1", "i1", "view", at(10, 0)), ("e2", "u1", "i1", "purchase", at(10, 29)),
              ("e3", "u1", "i2", "view", at(11, 0)), ("e4", "u1", "i2", "purchase", at(11, 5)),
              ("e5", "u2", "i3", "view", at(10, 0)), ("e6", "u2", "i3", "purchase", at(10, 1)),
              ("e7", "u3", "i1", "view", at(12, 0))]
    keys = ("event_id", "user_id", "item_id", "event_type", "event_timestamp")
    return {
        "events": pa.Table.from_pylist([dict(zip(keys, e, strict=True)) for e in events],
                                       schema=nullable("events")),
        "items": pa.Table.from_pylist([{"item_id": i} for i in ("i1", "i2", "i3")],
                                      schema=nullable("items")),
    }


@pytest.fixture(scope="session")
def byod_shop(tmp_path_factory: pytest.TempPathFactory):
    """That export, written straight into the validated zone and built by dbt twice: first the
    events alone (no catalogue, no users: `events_only` is that build's published snapshot, kept
    on disk), then with the catalogue batch too. Read-only for tests."""
    from types import SimpleNamespace

    from shoprec.lake import write_batch
    from shoprec.transform import transform

    s = Settings(home=tmp_path_factory.mktemp("byod"))
    tables = byod_tables()
    write_batch(BYOD_DAY, {"events": tables["events"]}, zone="validated", settings=s)
    first = transform(settings=s)
    events_only = s.internal_snapshot().resolve()
    write_batch("catalogue", {"items": tables["items"]}, zone="validated", settings=s)
    second = transform(settings=s)
    return SimpleNamespace(settings=s, reports=(first, second), events_only=events_only)


# ----------------------------------------------------------------- private servers on loopback


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[int, subprocess.Popen]]:
    """(port, process) of a redis-server of the test's own, without persistence, on a free port
    (the shared instance on 6379 is never stopped, flushed or reconfigured); stopped on exit
    unless the test killed it."""
    from shoprec.children import redis_server

    with redis_server(timeout_s=10) as server:  # RedisUnavailable: the test errors, saying why
        yield server
