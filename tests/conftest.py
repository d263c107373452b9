"""Shared fixtures: every test gets its own SHOPREC_HOME so runs never share state."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from shoprec.config import Settings, reset_settings_cache

ROOT = Path(__file__).resolve().parent.parent
# Airflow reads its configuration at import: point it at a throwaway home before any test runs.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="shoprec-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")


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
    dst.analytics_snapshot(dataset).symlink_to(os.readlink(src.analytics_snapshot(dataset)))
