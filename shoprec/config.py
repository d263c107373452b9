"""The one settings object; every path derives from SHOPREC_HOME, so checkouts never share state."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime settings; any field is overridable as SHOPREC_<FIELD> (SHOPREC_HOME=/data/x)."""

    model_config = SettingsConfigDict(env_prefix="SHOPREC_", extra="ignore")

    home: Path = Field(default=Path(".shoprec"), description="Root of all runtime state.")
    dataset: str = Field(default="shop", description="Dataset namespace inside the lake.")
    seed: int = 42
    scale: str = Field(default="small", description="Default simulator scale for the demo.")

    # object storage: a local directory by default, s3://bucket/prefix at scale
    storage_uri: str | None = None
    s3_endpoint_url: str | None = None

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Tests change SHOPREC_* variables; this makes the next get_settings() read them again."""
    get_settings.cache_clear()
