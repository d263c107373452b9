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
