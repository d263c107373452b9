"""The one settings object; every path derives from SHOPREC_HOME, so checkouts never share state."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Literal

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


class TrainingSettings(BaseModel):
    """Model training and evaluation (SHOPREC_TRAINING__<FIELD>)."""

    protocol: Literal["time", "loo"] = "time"  # global time split | leave-one-out per user
    test_days: int = 3  # time split: the last days are the test period ...
    valid_days: int = 3  # ... and the days before them the validation period
    exclude: Literal["none", "purchased", "interacted"] = "none"  # history items not ranked
    max_len: int = 50  # interactions the model sees
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.3
    id_dropout: float = 0.1  # drop item-id embeddings so side features carry cold items alone
    user_features: bool = True  # point-in-time user features from Feast (recommender_training_v1)
    negatives: int | None = 1024  # sampled softmax over this many shared uniform negatives per
    # batch when the catalogue has more than twice as many items; else (or None) full softmax
    dense_targets: bool = True  # time split: learn to rank everything of the next test_days,
    # not only the next interaction (leave-one-out always predicts the next one)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 5  # epochs without a better validation NDCG@10
    eval_every: int = 1
    max_minutes: float | None = None  # wall-clock budget; stops early, keeps the best epoch
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    popularity_window_days: int | None = 14  # the popularity baseline's recent window
    knn_neighbours: int = 100
    ks: tuple[int, ...] = (10, 20)


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
    training: TrainingSettings = TrainingSettings()

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
    def runs_dir(self) -> Path:
        """Training runs (checkpoints, exported models); the registry promotes from here."""
        return self.root / "runs"

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
