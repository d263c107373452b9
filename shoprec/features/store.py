"""Build the FeatureStore for a dataset from Settings: registry and SQLite online store under
SHOPREC_HOME, or Redis when SHOPREC_FEAST__ONLINE_STORE=redis; DuckDB offline store over the
Parquet exports of dbt's feature tables."""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from pathlib import Path

from shoprec.config import Settings, get_settings

REPO_DIR = Path(__file__).resolve().parents[2] / "feature_repo"

# Known, understood noise: the push-fed StreamFeatureView is labelled alpha by Feast, and ibis
# (under Feast's DuckDB offline store) calls a DuckDB method DuckDB 2.0 deprecates.
warnings.filterwarnings("ignore", message="Stream feature views are experimental")
warnings.filterwarnings("ignore", category=DeprecationWarning, module="ibis")


def features_dir(settings: Settings, dataset: str) -> Path:
    return settings.root / "features" / dataset


def project_name(settings: Settings, dataset: str) -> str:
    return settings.feast.project or "shoprec_" + re.sub(r"[^A-Za-z0-9_]", "_", dataset)


def repo_config(settings: Settings, dataset: str):
    from feast.repo_config import RepoConfig

    state = settings.root / "feast" / dataset
    state.mkdir(parents=True, exist_ok=True)
    if settings.feast.online_store == "redis":
        online = {"type": "redis", "connection_string": settings.feast.redis_connection}
    elif settings.feast.online_store == "sqlite":
        online = {"type": "sqlite", "path": str(state / "online.db")}
    else:
        raise ValueError(f"unknown online store {settings.feast.online_store!r}: sqlite or redis")
    return RepoConfig(
        project=project_name(settings, dataset), provider="local",
        registry=str(state / "registry.db"), online_store=online,
        offline_store={"type": "duckdb"}, entity_key_serialization_version=3,
        repo_path=REPO_DIR,
    )


def get_store(settings: Settings | None = None, dataset: str | None = None):
    from feast import FeatureStore

    s = settings or get_settings()
    return FeatureStore(config=repo_config(s, dataset or s.dataset))


def definitions(settings: Settings, dataset: str) -> list:
    """The Feast objects of feature_repo/, built for this dataset's exports."""
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    return importlib.import_module("definitions").build(features_dir(settings, dataset))
