"""The one settings object; every path derives from SHOPREC_HOME, so checkouts never share state."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shoprec.names import check_name

SwitchableRule = Literal["funnel", "duplicates", "unknown_items", "unknown_users", "price_range",
                         "quantity_range", "time_range"]
"""Content rules about a shop's habits, which a dataset's profile may switch off; the contract
rules (columns, types, required values, keys, domains, lengths) are not: dbt relies on them."""


class ValidationSettings(BaseModel):
    """Thresholds of the validation gate (SHOPREC_VALIDATION__<FIELD>); a dataset's profile
    (Settings.validation_profile) overrides them for that dataset."""

    min_timestamp: dt.datetime = Field(dt.datetime(1990, 1, 1, tzinfo=dt.UTC), description=(
        "Events and signups before this are wrong (catalogue rows may be older)."))
    future_slack_minutes: int = Field(10, ge=0, description=(
        "Clock skew tolerated before a timestamp is in the future."))
    price_ceiling: float = Field(1_000_000.0, gt=0, description="Highest plausible price.")
    max_quantity: int = Field(10_000, ge=1, description="Highest plausible quantity of one event.")
    max_unknown_item_rate: float = Field(0.001, ge=0, le=1, description=(
        "Share of events whose item_id no batch brought (late-arriving catalogue rows)."))
    max_unknown_user_rate: float = Field(0.001, ge=0, le=1, description=(
        "Share of events whose user_id no batch brought."))
    max_duplicate_rate: float = Field(0.01, ge=0, le=1, description=(
        "Share of events repeating user, item, type and timestamp under another event_id."))
    max_funnel_violation_rate: float = Field(0.02, ge=0, le=1, description=(
        "Share of purchases without a prior view of the item in the session."))
    sample_size: int = Field(10, ge=1, description="Offending ids a failure names.")
    held_reference_policy: Literal["wait", "warn", "fail"] = Field("wait", description=(
        "Events using ids only a quarantined or waiting batch introduced (while the "
        "unknown_items/unknown_users rule is on): wait keeps the batch in landing until that "
        "one is re-delivered fixed; warn validates it anyway; fail quarantines it too."))
    workers: int = Field(2, ge=1, description=(
        "Processes that judge batches in parallel (1: in-process)."))
    duckdb_memory_mb: int = Field(512, ge=64, description=(
        "DuckDB memory limit of each judging process (it spills beyond): without it each "
        "worker's buffer pool grows towards 80 % of the machine over a large delivery."))
    screen: bool = Field(True, description=(
        "Screen all pending batches in one GX run per table and judge only the flagged ones "
        "alone (false: every batch alone; same verdicts, one GX run per table and batch)."))
    skip_rules: list[SwitchableRule] = Field(default_factory=list, description=(
        "Content rules switched off (a profile's [rules] table sets this per dataset)."))


class FeastSettings(BaseModel):
    """Feature store (SHOPREC_FEAST__<FIELD>): SQLite online store by default, Redis at scale."""

    online_store: str = "sqlite"  # sqlite | redis
    redis_connection: str = "127.0.0.1:6379"  # Feast's connection_string (host:port[,opts])
    project: str | None = Field(None, description=(
        "Feast project (its keys' namespace on Redis); default shoprec_<dataset>, other "
        "characters hex-escaped. `{home_id}` and `{dataset}` in it are filled in, so that "
        "several homes share one Redis (e.g. s{home_id}_{dataset})."))
    engine: Literal["shoprec", "local"] = Field("shoprec", description=(
        "Materialization engine: Feast's local engine with Shoprec's faster conversion and "
        "SQLite writes (features/engine.py, the same online bytes), or Feast's own `local`."))
    sequence_length: int = 20  # interactions kept in a user's sequence: dbt's daily one (passed
    # to dbt as SHOPREC_SEQUENCE_LENGTH) and the live one extended by pushes
    repeat_max_items: int = Field(200, ge=1, description=(
        "Items per user in the repeat statistics (dbt's feat_user_item_history, passed as "
        "SHOPREC_REPEAT_MAX_ITEMS; training/repeat.py's MAX_ITEMS is the same cap)."))


class TrainingSettings(BaseModel):
    """Model training and evaluation (SHOPREC_TRAINING__<FIELD>)."""

    protocol: Literal["time", "loo", "session"] = "time"  # global time split | leave-one-out
    # per user | each user's last session is the test, the one before the validation
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
    # not only the next interaction (leave-one-out and session always predict the next one)
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
    ease_max_items: int = 20_000  # the EASE baseline's Gram matrix is items^2 (20k: 1.5 GiB in
    # float32, an inversion of minutes on 2 CPU cores): larger catalogues skip it
    tifu_max_users: int = Field(100_000, ge=1, description=(
        "The TIFU-KNN baseline compares every evaluated user with every user: above this many "
        "users it is skipped (logged), as EASE is above ease_max_items."))
    duckdb_memory_mb: int = Field(2048, ge=64, description=(
        "DuckDB memory limit while loading the events (it spills beyond): it encodes and sorts "
        "them, 4.2 GB at 10M events without a limit, 2.7 GB with 2048 (5.2 s -> 5.7 s)."))
    tune_users: int = Field(5000, ge=1, description=(
        "The baselines' hyper-parameters are chosen on at most this many validation users (a "
        "fixed random sample; all of them when fewer); every model's validation and test "
        "figures still cover all users. At 10M events (52,677 validation users) TIFU-KNN's "
        "tuning on all of them ran over 8 minutes."))


class RegistrySettings(BaseModel):
    """Model registry storage (SHOPREC_REGISTRY__<FIELD>): a local directory
    (`Settings.model_registry()`) unless a bucket is named here or `storage_uri` is s3://...
    Credentials come only from the environment / boto3's chain, never from these settings."""

    bucket: str | None = Field(None, description="S3 bucket of the registry (default: local).")
    prefix: str = Field("registry", description="Key prefix inside the bucket.")
    endpoint_url: str | None = Field(None, description=(
        "S3-compatible endpoint (MinIO, ...); default: SHOPREC_S3_ENDPOINT_URL, else AWS."))
    region: str | None = Field(None, description="S3 region (default: boto3's chain).")


class GateSettings(BaseModel):
    """What a candidate must show before it is promoted (SHOPREC_GATES__<FIELD>; gates run in
    shoprec/registry/gates.py), and when the retraining DAG trains at all."""

    metric: str = Field("ndcg@10", description=(
        "Metric the candidate is judged by, on the held-out test split (recall@K, ndcg@K, "
        "mrr@K or hit@K of training.ks)."))
    metric_by_protocol: dict[str, str] = Field(default_factory=dict, description=(
        "Per-protocol override of `metric`, e.g. {\"loo\": \"recall@20\"}."))
    margin: float = Field(0.0, ge=-1.0, description=(
        "Relative margin over every baseline: the candidate must score more than "
        "baseline x (1 + margin); 0 = strictly better. Negative values tolerate losing "
        "(tests on tiny data only)."))
    max_regression: float = Field(0.0, ge=-1.0, le=1.0, description=(
        "Refused when candidate < production x (1 - max_regression), both re-scored on the "
        "same current data and protocol; 0 = never worse than production."))
    latency_budget_ms: float = Field(50.0, gt=0, description=(
        "p99 of one user's scoring on CPU (model + ranker), in milliseconds."))
    latency_calls: int = Field(200, ge=10, description="Single-user calls the p99 is taken over.")
    min_coverage: float = Field(0.01, ge=0, le=1, description=(
        "Floor of the candidate's catalogue coverage@20 on the test split."))
    min_new_events: int = Field(1000, ge=0, description=(
        "The retraining DAG trains only when at least this many events arrived after the data "
        "window of the last trained version (production or candidate); 0 = always."))

    def metric_for(self, protocol: str | None) -> str:
        return self.metric_by_protocol.get(protocol or "", self.metric)


class ServingSettings(BaseModel):
    """The serving process (SHOPREC_SERVING__<FIELD>; serving/)."""

    # the event intake (serving/events.py): POST /events, its spool and its landing batches
    flush_events: int = Field(500, ge=1, description=(
        "Accepted events the spool holds before they are flushed into the landing zone as one "
        "batch."))
    flush_seconds: float = Field(5.0, gt=0, description=(
        "Age of the oldest spooled event that triggers a flush, however few events wait."))
    max_batch: int = Field(1000, ge=1, description=(
        "Most events one POST /events call may carry (more: 422, nothing accepted)."))

    # recommendations (serving/app.py, serving/online.py)
    admin_token: SecretStr | None = Field(None, description=(
        "Bearer token of the admin endpoints (POST /admin/reload); none configured (the "
        "default): they answer 403. Set it in the environment only (SHOPREC_SERVING__ADMIN_"
        "TOKEN), never in a file of the repository."))
    feature_timeout_ms: float = Field(50.0, gt=0, description=(
        "Budget of one online feature lookup; slower: the request is answered from the "
        "export (strategy fallback) and the lookup counts as a failure of the store."))
    push_timeout_ms: float = Field(500.0, gt=0, description=(
        "Budget of pushing one user's accepted events of a POST /events call into their live "
        "sequence; slower or failing: 202 with live_features stale (the events are in the "
        "spool)."))
    store_workers: int = Field(4, ge=1, description=(
        "Threads that talk to the online store; when all are busy (a hanging store) a "
        "request does not queue: it falls back at once."))
    breaker_failures: int = Field(3, ge=1, description=(
        "Consecutive failed or timed-out online lookups that open the circuit breaker: the "
        "store is then not asked at all ..."))
    breaker_reset_seconds: float = Field(5.0, gt=0, description=(
        "... for this long; then one request tries it again (half-open) and closes the "
        "breaker when it answers in time."))
    gil_switch_ms: float = Field(1.0, gt=0, le=100, description=(
        "The serving process's GIL switch interval (Python's default: 5 ms). Scoring runs on "
        "the event loop and lookups on the store's threads; a shorter interval lets a lookup "
        "resume sooner while the loop scores: measured p99 at 300 req/s 22 ms vs 45 ms."))
    reload_seconds: float = Field(30.0, gt=0, description=(
        "How often the registry's production alias is polled; a new version is loaded and "
        "warmed off the request path, then swapped in."))
    warm_users: int = Field(8, ge=0, description=(
        "Users scored to warm a newly loaded model before it is swapped in."))
    exclude: dict[str, Literal["none", "purchased", "interacted"]] = Field(
        default_factory=dict, description=(
            "Per dataset, which history items are never recommended (default: the rule the "
            "production model was trained with, training.exclude); e.g. {\"grocer\": \"none\"}"
            ": consumables are bought again."))


class PrivacySettings(BaseModel):
    """Forgetting users (SHOPREC_PRIVACY__<FIELD>; shoprec/privacy/)."""

    key: SecretStr | None = Field(None, description=(
        "HMAC key of the forget log and of the trained-user sets of models (environment only: "
        "SHOPREC_PRIVACY__KEY). Unset: a random key is created once in SHOPREC_HOME/secrets "
        "(mode 0600). A plain hash of a short id can be guessed; a keyed one cannot."))


class AirflowSettings(BaseModel):
    """How Shoprec's DAGs are operated (SHOPREC_AIRFLOW__<FIELD>)."""

    alert_webhook: str | None = Field(None, description=(
        "URL that receives each failure alert as a JSON POST (Slack/Teams-style incoming "
        "webhooks, an alert manager); alerts are always written to the alerts log too."))
    alert_timeout_s: float = Field(5.0, gt=0, description=(
        "How long a failure callback waits for the webhook."))
    dag_timeout_minutes: float = Field(480.0, gt=0, description=(
        "dagrun_timeout of every Shoprec DAG."))
    task_timeout_minutes: float = Field(60.0, gt=0, description=(
        "execution_timeout of every task but training's."))
    train_timeout_minutes: float = Field(360.0, gt=0, description=(
        "execution_timeout of shoprec_training's train task (all its seeds)."))
    db_url: str | None = Field(None, description=(
        "Airflow's metadata database for `shoprec up` (SQLAlchemy URL, e.g. postgresql+"
        "psycopg2://user@host/db); default: SQLite in Settings.airflow_home()."))
    api_url: str | None = Field(None, description=(
        "Airflow's API server (http://127.0.0.1:8080): when set, every landing (import, "
        "simulate, serving's event flush) posts an asset event for shoprec-landing-<dataset>, "
        "which triggers shoprec_pipeline at once; unset, the daily schedule picks it up."))
    api_username: str | None = Field(None, description="User for Airflow's API token.")
    api_password: SecretStr | None = Field(None, description=(
        "Its password (environment only: SHOPREC_AIRFLOW__API_PASSWORD)."))


class Settings(BaseSettings):
    """Runtime settings; any field is overridable as SHOPREC_<FIELD> (SHOPREC_HOME=/data/x)."""

    model_config = SettingsConfigDict(env_prefix="SHOPREC_", env_nested_delimiter="__",
                                      extra="ignore")

    home: Path = Field(default=Path(".shoprec"), description="Root of all runtime state.")
    dataset: str = Field(default="shop", description="Dataset namespace inside the lake.")
    seed: int = 42
    scale: str = Field(default="small", description="Default simulator scale for the demo.")

    # object storage: a local directory by default, s3://bucket/prefix at scale
    storage_uri: str | None = Field(default=None, description=(
        "s3://bucket/prefix: the lake's zones and the model registry live there, under the "
        "same relative paths as in the home. `{home_id}` in it stands for Settings.home_id, "
        "so that several homes share one bucket (CI's scaled mode, per-developer sandboxes)."))
    s3_endpoint_url: str | None = Field(default=None, description=(
        "S3-compatible endpoint (MinIO, moto's server); default: AWS. Credentials come only "
        "from the environment / boto3's chain (AWS_ACCESS_KEY_ID, ...)."))

    session_gap_minutes: int = Field(default=30, ge=1, description=(
        "Where events carry no session_id, a user's session ends after this much inactivity: "
        "dbt's session models and the session evaluation protocol cut at the same gap."))
    profiles_dir: Path | None = Field(default=None, description=(
        "Per-dataset validation profiles (<dataset>.toml); default SHOPREC_HOME/profiles."))
    dbt_memory_mb: int = Field(default=2048, ge=256, description=(
        "DuckDB memory limit of a dbt build (it spills to disk beyond): 2 GB keeps the "
        "10M-event build under 3 GB of RSS (BENCHMARKS.md); more is faster."))

    validation: ValidationSettings = ValidationSettings()
    feast: FeastSettings = FeastSettings()
    training: TrainingSettings = TrainingSettings()
    registry: RegistrySettings = RegistrySettings()
    gates: GateSettings = GateSettings()
    serving: ServingSettings = ServingSettings()
    privacy: PrivacySettings = PrivacySettings()
    airflow: AirflowSettings = AirflowSettings()

    # ---------------------------------------------------------------- the map of SHOPREC_HOME
    # Every runtime location is named here and nowhere else (tests/test_layout.py enforces it);
    # dbt and Feast get theirs through `tool_env()` and the generated feature_store.yaml.

    @property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def home_id(self) -> str:
        """A short stable name of this home (12 hex digits of its path's SHA-256): what
        `{home_id}` in storage_uri and feast.project stands for."""
        import hashlib

        return hashlib.sha256(str(self.root).encode()).hexdigest()[:12]

    def storage_root(self) -> str | None:
        """`storage_uri` with `{home_id}` filled in and no trailing '/' (None: local only)."""
        if not self.storage_uri:
            return None
        return self.storage_uri.replace("{home_id}", self.home_id).rstrip("/")

    @field_validator("storage_uri")
    @classmethod
    def _storage_uri_is_s3(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith("s3://") or not v.removeprefix("s3://").split("/")[0]:
            raise ValueError(f"storage_uri {v!r} must be s3://bucket[/prefix]")
        return v

    @field_validator("home")
    @classmethod
    def _home_has_no_quote(cls, v: Path) -> Path:
        # dbt's sources put the validated zone inside a SQL string literal and a glob, dbt-duckdb
        # formats it with str.format, and SQLAlchemy's text() reads ":name" as a parameter
        bad = sorted(set(str(v)) & set("'\"\n:{}*?[]"))
        if bad:
            raise ValueError(f"SHOPREC_HOME {str(v)!r} must not contain any of {bad}")
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset_is_a_name(cls, v: str) -> str:
        return check_name(v, "dataset")

    def _ds(self, dataset: str | None) -> str:
        """Every location of a dataset passes here: a name that could escape is refused."""
        return self.dataset if dataset is None else check_name(dataset, "dataset")

    def lake(self, dataset: str | None = None) -> Path:
        return self.root / "lake" / self._ds(dataset)

    def zone(self, zone: str, dataset: str | None = None) -> Path:
        """One of landing / validated / quarantine of a dataset."""
        return self.lake(dataset) / zone

    def contract_stubs(self, dataset: str | None = None) -> Path:
        """Empty Parquet files of the contract schemas inside the validated zone (a dot folder,
        so no batch): dbt's source globs always match a file, even when no delivery so far
        brought that table, and every contract column exists."""
        return self.zone("validated", dataset) / ".contract"

    def validation_profile(self, dataset: str | None = None) -> Path:
        """The dataset's validation profile (thresholds and which rules apply), if any."""
        base = self.profiles_dir.expanduser().resolve() if self.profiles_dir else \
            self.root / "profiles"
        return base / f"{self._ds(dataset)}.toml"

    def validation_ledger(self, dataset: str | None = None) -> Path:
        """Append-only verdicts of the gate, keyed by content hash."""
        return self.lake(dataset) / "_validation_ledger.jsonl"

    def arrival_counter(self, dataset: str | None = None) -> Path:
        """The last arrival number handed to a delivery (lock-protected counter)."""
        return self.lake(dataset) / "_arrivals"

    def rebuild_marker(self, dataset: str | None = None) -> Path:
        """Set when a validated batch was retracted or superseded: derived data (dbt's increments,
        the online store) must be rebuilt in full, not extended."""
        return self.lake(dataset) / "_rebuild_needed.json"

    def lake_sync_manifest(self, dataset: str | None = None) -> Path:
        """With the lake on object storage: the working copy's last agreed state with the
        bucket (shoprec/lake_sync.py); never uploaded."""
        return self.lake(dataset) / ".sync-manifest.json"

    def warehouse(self, dataset: str | None = None) -> Path:
        """The DuckDB file dbt writes (one writer at a time)."""
        return self.root / "warehouse" / f"{self._ds(dataset)}.duckdb"

    def analytics_snapshot(self, dataset: str | None = None) -> Path:
        """The analysts' read-only copy, user and session ids pseudonymized: a symlink swapped
        atomically after each good build."""
        return self.root / "warehouse" / f"{self._ds(dataset)}-analytics.duckdb"

    def internal_snapshot(self, dataset: str | None = None) -> Path:
        """The published warehouse with its real ids, for Feast's exports, training and
        serving (never handed to analysts): a symlink swapped atomically after each build."""
        return self.root / "warehouse" / f"{self._ds(dataset)}-internal.duckdb"

    def warehouse_snapshots(self) -> Path:
        """Published internal copies behind the internal symlinks (dataset in the name)."""
        return self.root / "warehouse" / "snapshots"

    def analysts_snapshots(self) -> Path:
        """Published pseudonymized copies behind the analytics symlinks."""
        return self.root / "warehouse" / "analysts"

    def dbt_state(self, dataset: str | None = None) -> Path:
        """dbt's target/ and logs/ of a dataset (never inside the repository)."""
        return self.root / "dbt" / self._ds(dataset)

    def dbt_target(self, dataset: str | None = None) -> Path:
        return self.dbt_state(dataset) / "target"

    def dbt_manifest(self, dataset: str | None = None) -> Path:
        """dbt's manifest of the last build (the models' configs: unique keys for publishing)."""
        return self.dbt_target(dataset) / "manifest.json"

    def dbt_logs(self, dataset: str | None = None) -> Path:
        return self.dbt_state(dataset) / "logs"

    def dbt_docs(self, dataset: str | None = None) -> Path:
        return self.dbt_target(dataset) / "index.html"

    def dbt_manifest_cache(self) -> Path:
        return self.cache_dir / "dbt-manifest"

    def feast_state(self, dataset: str | None = None) -> Path:
        """Feast's registry, SQLite online store, generated feature_store.yaml and locks."""
        return self.root / "feast" / self._ds(dataset)

    def feast_registry(self, dataset: str | None = None) -> Path:
        return self.feast_state(dataset) / "registry.db"

    def feast_online_db(self, dataset: str | None = None) -> Path:
        return self.feast_state(dataset) / "online.db"

    def feast_yaml(self, dataset: str | None = None) -> Path:
        """Generated from these settings for the `feast` CLI (`shoprec features apply`)."""
        return self.feast_state(dataset) / "feature_store.yaml"

    def feast_locks(self, dataset: str | None = None) -> Path:
        return self.feast_state(dataset) / "locks"

    def feature_exports(self, dataset: str | None = None) -> Path:
        """Parquet exports of dbt's feature tables: Feast's offline sources."""
        return self.root / "features" / self._ds(dataset)

    def runs_dir(self, dataset: str | None = None) -> Path:
        """Training runs (checkpoints, exported models); the registry promotes from here."""
        return self.root / "runs" / self._ds(dataset)

    def model_registry(self) -> Path:
        """Registered model versions and aliases (local default; S3 at scale via storage_uri)."""
        return self.root / "registry"

    def model_cache(self, dataset: str | None = None) -> Path:
        """Registered versions downloaded for loading (one verified folder per version)."""
        return self.cache_dir / "models" / self._ds(dataset)

    def serving_state(self) -> Path:
        """What the serving process keeps on disk (event spool, caches)."""
        return self.root / "serving"

    def event_spool(self, dataset: str | None = None) -> Path:
        """POST /events' SQLite file: the event ids seen (idempotency) and the accepted events
        not yet landed (the durable spool), shared by every serving process of the dataset."""
        return self.serving_state() / self._ds(dataset) / "events.sqlite"

    def event_flush_lock(self, dataset: str | None = None) -> Path:
        """Held while a serving process lands spooled events, so one batch lands once."""
        return self.serving_state() / self._ds(dataset) / "flush.lock"

    def privacy_key_file(self) -> Path:
        """The HMAC key created when `privacy.key` is not set (never in the repository)."""
        return self.root / "secrets" / "privacy.key"

    def privacy_state(self, dataset: str | None = None) -> Path:
        return self.root / "privacy" / self._ds(dataset)

    def forget_log(self, dataset: str | None = None) -> Path:
        """Append-only: one record per forget request and step, the user only as a keyed HMAC."""
        return self.privacy_state(dataset) / "forget_log.jsonl"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def movielens_cache(self) -> Path:
        """MovieLens-100K's files once downloaded or unpacked from a wheel."""
        return self.cache_dir / "movielens" / "ml-100k"

    def wheel_cache(self) -> Path:
        """Wheels a user put on disk for offline imports (e.g. recbole's, holding ml-100k)."""
        return self.cache_dir / "wheels"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def data_docs_dir(self) -> Path:
        """The Great Expectations Data Docs site (open index.html)."""
        return self.reports_dir / "data_docs"

    def log_file(self) -> Path:
        """What the CLI keeps off the console: third-party warnings and logs (`-v` shows them)."""
        return self.root / "logs" / "shoprec.log"

    def airflow_home(self) -> Path:
        """AIRFLOW_HOME of the Airflow that `shoprec up` runs for this home (its login, logs,
        JWT secret)."""
        return self.root / "airflow"

    def airflow_db(self) -> Path:
        """Airflow's SQLite metadata for `shoprec up` (unless `airflow.db_url` names another)."""
        return self.airflow_home() / "airflow.db"

    def airflow_passwords(self) -> Path:
        """SimpleAuthManager's passwords file: the UI/API login `shoprec up` writes once."""
        return self.airflow_home() / "passwords.json"

    def airflow_jwt_secret(self) -> Path:
        """The JWT secret every Airflow component of this home shares (written once)."""
        return self.airflow_home() / "jwt_secret"

    def airflow_logs(self) -> Path:
        """Airflow's task logs and each component's own output (`<component>.out`)."""
        return self.airflow_home() / "logs"

    def demo_log(self, name: str) -> Path:
        """The demo's log of one of its steps (a DAG's dag.test() run, the serving it starts)."""
        return self.airflow_logs() / f"demo-{check_name(name, 'log')}.log"

    def alerts_log(self) -> Path:
        """Failure alerts of the DAGs, one JSON object per line (shoprec.pipeline.ops.alert)."""
        return self.root / "logs" / "alerts.jsonl"

    def data_docs_index(self) -> Path:
        return self.data_docs_dir / "index.html"

    def data_docs_lock(self) -> Path:
        """flock'd while a validation worker builds the Data Docs site (one builder at a time)."""
        return self.data_docs_dir / ".build.lock"

    def import_rejects(self, dataset: str | None = None, batch_id: str | None = None,
                       kind: str = "events") -> Path:
        """Rows an importer refused (the folder, or one batch's file), kept outside the lake."""
        folder = self.reports_dir / "imports" / self._ds(dataset)
        return folder / f"{batch_id}_rejected_{kind}.parquet" if batch_id else folder

    def training_report(self, dataset: str | None = None, protocol: str = "time") -> Path:
        return self.reports_dir / "training" / f"{self._ds(dataset)}-{protocol}.json"

    def locations(self, dataset: str | None = None) -> dict[str, Path]:
        """Every location of a dataset by name (`shoprec info`, the README's map)."""
        ds = self._ds(dataset)
        return {
            "landing": self.zone("landing", ds), "validated": self.zone("validated", ds),
            "quarantine": self.zone("quarantine", ds),
            "validation_ledger": self.validation_ledger(ds),
            "validation_profile": self.validation_profile(ds),
            "contract_stubs": self.contract_stubs(ds),
            "arrival_counter": self.arrival_counter(ds),
            "rebuild_marker": self.rebuild_marker(ds),
            "lake_sync_manifest": self.lake_sync_manifest(ds), "warehouse": self.warehouse(ds),
            "analytics_snapshot": self.analytics_snapshot(ds),
            "warehouse_snapshots": self.warehouse_snapshots(), "dbt_state": self.dbt_state(ds),
            "feast_state": self.feast_state(ds), "feast_yaml": self.feast_yaml(ds),
            "feature_exports": self.feature_exports(ds), "runs": self.runs_dir(ds),
            "model_registry": self.model_registry(), "serving_state": self.serving_state(),
            "event_spool": self.event_spool(ds), "event_flush_lock": self.event_flush_lock(ds),
            "model_cache": self.model_cache(ds),
            "reports": self.reports_dir, "data_docs": self.data_docs_dir,
            "data_docs_lock": self.data_docs_lock(),
            "log_file": self.log_file(), "alerts_log": self.alerts_log(),
            "airflow_home": self.airflow_home(),
            "import_rejects": self.import_rejects(ds), "cache": self.cache_dir,
        }

    def uri(self, path: Path) -> str:
        """A location as a URI: `file://` today; under `storage_uri` (s3://…) once a stage
        lives on object storage, with the same path relative to the home."""
        path = Path(path)
        root = self.storage_root()
        if root and path.is_relative_to(self.root):
            return f"{root}/{path.relative_to(self.root).as_posix()}"
        return path.resolve().as_uri()

    def online_store_uri(self, dataset: str | None = None) -> str:
        """The online store of a dataset as a URI (SQLite file or Redis server)."""
        if self.feast.online_store == "redis":
            return f"redis://{self.feast.redis_connection.split(',')[0]}/{self._ds(dataset)}"
        return self.uri(self.feast_online_db(dataset))

    def tool_env(self, dataset: str | None = None) -> dict[str, str]:
        """The locations dbt (profiles.yml, sources) and the Feast CLI read, as environment
        variables: the only way those tools learn where anything is."""
        ds = self._ds(dataset)
        return {"SHOPREC_HOME": str(self.root), "SHOPREC_DATASET": ds,
                "SHOPREC_WAREHOUSE": str(self.warehouse(ds)),
                "SHOPREC_VALIDATED": str(self.zone("validated", ds)),
                "SHOPREC_SEQUENCE_LENGTH": str(self.feast.sequence_length),
                "SHOPREC_REPEAT_MAX_ITEMS": str(self.feast.repeat_max_items),
                "SHOPREC_SESSION_GAP_MINUTES": str(self.session_gap_minutes),
                "SHOPREC_DUCKDB_MEMORY_LIMIT": f"{self.dbt_memory_mb}MB",
                "FEAST_FS_YAML_FILE_PATH": str(self.feast_yaml(ds))}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Tests change SHOPREC_* variables; this makes the next get_settings() read them again."""
    get_settings.cache_clear()
