"""The one settings object; every path derives from SHOPREC_HOME, so checkouts never share state."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ValidationSettings(BaseModel):
    """Thresholds of the validation gate (SHOPREC_VALIDATION__<FIELD>)."""

    min_timestamp: dt.datetime = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
    future_slack_minutes: int = 10  # clock skew tolerated before "in the future"
    price_ceiling: float = 1_000_000.0
    max_quantity: int = 10_000
    max_unknown_item_rate: float = 0.001  # late-arriving catalogue rows
    max_unknown_user_rate: float = 0.001
    max_duplicate_rate: float = 0.01  # same user, item, type and timestamp under other ids
    max_funnel_violation_rate: float = 0.02  # purchases without a prior view in the session
    sample_size: int = 10
    workers: int = 2  # processes that judge batches in parallel (1 = in-process)


class FeastSettings(BaseModel):
    """Feature store (SHOPREC_FEAST__<FIELD>): SQLite online store by default, Redis at scale."""

    online_store: str = "sqlite"  # sqlite | redis
    redis_connection: str = "127.0.0.1:6379"  # Feast's connection_string (host:port[,opts])
    project: str | None = None  # default: shoprec_<dataset>
    sequence_length: int = 20  # live sequence kept online (matches dbt's recent_sequence_length)


class Settings(BaseSettings):
    """Runtime settings; any field is overridable as SHOPREC_<FIELD> (SHOPREC_HOME=/data/x)."""

    model_config = SettingsConfigDict(env_prefix="SHOPREC_", env_nested_delimiter="__",
                                      extra="ignore")

    home: Path = Field(default=Path(".shoprec"), description="Root of all runtime state.")
    dataset: str = Field(default="shop", description="Dataset namespace inside the lake.")
    seed: int = 42
    scale: str = Field(default="small", description="Default simulator scale for the demo.")

    # object storage: a local directory by default, s3://bucket/prefix at scale
    storage_uri: str | None = None
    s3_endpoint_url: str | None = None

    validation: ValidationSettings = ValidationSettings()
    feast: FeastSettings = FeastSettings()

    @property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    def lake(self, dataset: str | None = None) -> Path:
        return self.root / "lake" / (dataset or self.dataset)

    def zone(self, zone: str, dataset: str | None = None) -> Path:
        """One of landing / validated / quarantine of a dataset."""
        return self.lake(dataset) / zone

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def data_docs_dir(self) -> Path:
        """The Great Expectations Data Docs site (open index.html)."""
        return self.reports_dir / "data_docs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Tests change SHOPREC_* variables; this makes the next get_settings() read them again."""
    get_settings.cache_clear()
