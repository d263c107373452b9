"""Feast's local materialization engine with a faster last step: the same plan (DuckDB pulls the
latest row per entity, Feast's dedup), the same online rows, byte for byte, written faster.

Profiled at 10M events (SQLite, 1.08M entity rows, 9.2M feature values), Feast's own last step
spent 67 s turning Arrow columns into ValueProtos one Python value at a time (pandas' isna and
list sanitising per value) and 119 s writing SQLite with one statement per feature value. Here
the columns of the types Shoprec's views use are converted column by column, and SQLite gets
the same upsert as Feast's (`sqlite.py`) through `executemany` in one transaction, and Redis
Feast's HMGET-then-HSET with field names hashed once per view. Any other type or store goes
through Feast's own code. `feature_store.yaml` names
this engine, so the `feast` CLI materializes the same way."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from feast.infra.common.materialization_job import (
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.compute_engines.local.nodes import LocalOutputNode
from feast.infra.registry.base_registry import BaseRegistry
from feast.protos.feast.types.Value_pb2 import Int64List, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType

from shoprec.features.store import ENGINE

GLOB = "*.parquet"  # a view's source: all of its export's day files

# Feast's casts (type_map.PYTHON_SCALAR_VALUE_TYPE_TO_PROTO_VALUE): an integer feature read
# from a DOUBLE column is int() of it
_SCALARS = {ValueType.INT64: ("int64_val", int), ValueType.DOUBLE: ("double_val", float),
            ValueType.STRING: ("string_val", str)}
_LISTS = {ValueType.INT64_LIST: ("int64_list_val", Int64List),
          ValueType.STRING_LIST: ("string_list_val", StringList)}


class ShoprecEngineConfig(FeastConfigBaseModel):
    """feature_store.yaml's `batch_engine: {type: <ENGINE>}`."""

    type: str = ENGINE
    backend: str | None = None


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def column_protos(array: pa.Array | pa.ChunkedArray, value_type: ValueType) -> list[ValueProto]:
    """One column as Feast's ValueProtos, equal to what `feast.type_map` makes of it (a test
    compares them on every view): a missing value is an empty Value."""
    values = array.to_pylist()
    if value_type in _SCALARS:
        field, cast = _SCALARS[value_type]
        return [ValueProto() if _missing(v) else ValueProto(**{field: cast(v)}) for v in values]
    if value_type in _LISTS:
        from feast.type_map import _LIST_NONE_DEFAULTS

        field, kind = _LISTS[value_type]
        default = _LIST_NONE_DEFAULTS.get(value_type)
        return [ValueProto() if v is None else ValueProto(**{field: kind(val=(
            v if default is None or None not in v else
            [default if e is None else e for e in v]))}) for v in values]
    from feast.type_map import python_values_to_proto_values

    return python_values_to_proto_values(values, value_type)


def column_bytes(array: pa.Array | pa.ChunkedArray, value_type: ValueType
                 ) -> tuple[list[bytes], list[str | None]]:
    """One column as the online stores keep it: each value's serialized ValueProto and its
    `value_text` (feast.infra.online_stores.helpers.extract_text_and_num). A scalar's bytes are
    made once per distinct value: counts and flags repeat over a million rows."""
    if value_type not in _SCALARS:
        from feast.infra.online_stores.helpers import extract_text_and_num

        protos = column_protos(array, value_type)
        return ([p.SerializeToString() for p in protos],
                [extract_text_and_num(p, False)[0] for p in protos])
    field, cast = _SCALARS[value_type]
    made: dict[Any, bytes] = {}
    blobs, texts = [], []
    for v in array.to_pylist():
        if _missing(v):
            blobs.append(b"")
            texts.append(None)
            continue
        v = cast(v)
        key = (v, math.copysign(1.0, v)) if value_type == ValueType.DOUBLE else v  # -0.0 != 0.0
        blob = made.get(key)
        if blob is None:
            blob = made[key] = ValueProto(**{field: v}).SerializeToString()
        blobs.append(blob)
        texts.append(v if value_type == ValueType.STRING else str(v))
    return blobs, texts


@dataclass
class Columns:
    """A view's rows as the online stores write them, column by column: per row its entity key
    and times, per feature its serialized values and value texts."""

    keys: list  # EntityKeyProto per row
    times: list  # event time per row
    created: list  # created time per row (None without a created column)
    features: dict[str, tuple[list[bytes], list[str | None]]]


def view_columns(table: pa.Table, view, join_keys: dict[str, ValueType]) -> Columns:
    """What `feast.utils._convert_arrow_to_proto` makes of a plain feature view's table, without
    a ValueProto or a dict per row."""
    from feast.utils import _build_entity_keys

    key_protos = {name: column_protos(table.column(name), vt) for name, vt in join_keys.items()}
    source = view.batch_source
    return Columns(
        keys=_build_entity_keys(table.num_rows, join_keys, key_protos),
        times=_times(table, source.timestamp_field),
        created=_times(table, source.created_timestamp_column),
        features={f.name: column_bytes(table.column(f.name), f.dtype.to_value_type())
                  for f in view.features})


def _times(table: pa.Table, column: str | None) -> list:
    import pandas as pd
    from feast.utils import _coerce_datetime

    if not column:
        return [None] * table.num_rows
    return [_coerce_datetime(v) for v in
            pd.to_datetime(table.column(column).to_numpy(zero_copy_only=False))]


def arrow_to_rows(table: pa.Table, view, join_keys: dict[str, ValueType]) -> list[tuple]:
    """`feast.utils._convert_arrow_to_proto` for a plain feature view: (entity key, {feature:
    Value}, event time, created time) per row (for a store written through Feast's own code)."""
    from feast.utils import _build_entity_keys

    columns = [(f.name, f.dtype.to_value_type()) for f in view.features] + list(join_keys.items())
    protos = {name: column_protos(table.column(name), vt) for name, vt in columns}
    keys = _build_entity_keys(table.num_rows, join_keys, protos)
    names = [f.name for f in view.features]
    features = [dict(zip(names, row, strict=True))
                for row in zip(*(protos[n] for n in names), strict=True)]
    source = view.batch_source
    return list(zip(keys, features, _times(table, source.timestamp_field),
                    _times(table, source.created_timestamp_column), strict=True))


def sqlite_write(online_store, config, view, cols: Columns) -> bool:
    """Feast's SQLite upsert, row for row, through one `executemany`. False (nothing written)
    where Feast's writer would add columns this one does not (value_num, vectors)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.sqlite import _quote_id, _table_id
    from feast.utils import to_naive_utc

    if getattr(config.online_store, "enable_openai_compatible_store", False) or \
            config.online_store.vector_enabled:
        return False
    table = _table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    sql = (f"INSERT INTO {_quote_id(table)} (entity_key, feature_name, value, value_text, "
           "event_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, "
           "feature_name) DO UPDATE SET value = excluded.value, value_text = "
           "excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts;")
    version = config.entity_key_serialization_version
    features = list(cols.features.items())

    def values():
        for r, (key, ts, created) in enumerate(zip(cols.keys, cols.times, cols.created,
                                                   strict=True)):
            key_bin = serialize_entity_key(key, entity_key_serialization_version=version)
            ts = to_naive_utc(ts)
            created = created and to_naive_utc(created)
            for name, (blobs, texts) in features:
                yield key_bin, name, blobs[r], texts[r], ts, created

    conn = online_store._get_conn(config)
    with conn:
        conn.executemany(sql, values())
    return True


def redis_write(online_store, config, view, cols: Columns, chunk: int = 20_000) -> None:
    """Feast's Redis write (`redis.py`): per entity, the stored event time is read first and a
    row no newer is skipped (a live push may be newer than the batch), else one HSET of the
    view's `_ts:` field and a murmur3-named field per feature. The same keys and bytes, with the
    field names hashed once per view instead of once per value, and pipelines of `chunk`
    entities instead of one of every entity."""
    from feast import utils
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.infra.online_stores.redis import _versioned_fv_name
    from google.protobuf.timestamp_pb2 import Timestamp

    store_config = config.online_store
    client = online_store._get_client(store_config)
    name = _versioned_fv_name(view, config)
    ts_key = f"_ts:{name}"
    fields = [(_mmh3(f"{name}:{f}"), blobs) for f, (blobs, _) in cols.features.items()]
    version = config.entity_key_serialization_version
    latest: dict[bytes, int] = {}  # newest event time queued so far per key
    for lo in range(0, len(cols.keys), chunk):
        hi = min(lo + chunk, len(cols.keys))
        keys = [_redis_key(config.project, key, entity_key_serialization_version=version)
                for key in cols.keys[lo:hi]]
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, ts_key)
            stored = [v[0] for v in pipe.execute()]
            for r, key, prev in zip(range(lo, hi), keys, stored, strict=True):
                ts = Timestamp()
                ts.FromDatetime(utils.make_tzaware(cols.times[r]))
                nanos = ts.seconds * 1_000_000_000 + ts.nanos
                prev_nanos = 0
                if prev:
                    prev_ts = Timestamp()
                    prev_ts.ParseFromString(prev)
                    prev_nanos = prev_ts.seconds * 1_000_000_000 + prev_ts.nanos
                seen = max(prev_nanos, latest.get(key, 0))
                if seen and nanos <= seen:
                    continue
                latest[key] = nanos
                mapping = {ts_key: ts.SerializeToString()}
                for field, blobs in fields:
                    mapping[field] = blobs[r]
                pipe.hset(key, mapping=mapping)
                if store_config.key_ttl_seconds:
                    pipe.expire(name=key, time=store_config.key_ttl_seconds)
            pipe.execute()


class FastOutputNode(LocalOutputNode):
    def execute(self, context):
        from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
        from feast.infra.online_stores.redis import RedisOnlineStore
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        view = self.feature_view
        table = self.get_single_table(context).data
        if not view.online or table.num_rows == 0 \
                or context.repo_config.materialization_config.online_write_batch_size:
            return super().execute(context)
        output = ArrowTableValue(data=table)
        context.node_outputs[self.name] = output
        join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
        store, config = context.online_store, context.repo_config
        written = False
        if isinstance(store, RedisOnlineStore) and not config.online_store.skip_dedup:
            redis_write(store, config, view, view_columns(table, view, join_keys))
            written = True
        elif isinstance(store, SqliteOnlineStore):
            written = sqlite_write(store, config, view, view_columns(table, view, join_keys))
        if not written:
            store.online_write_batch(config=config, table=view,
                                     data=arrow_to_rows(table, view, join_keys),
                                     progress=lambda _: None)
        if view.offline:
            context.offline_store.offline_write_batch(
                config=context.repo_config, feature_view=view, table=table,
                progress=lambda _: None)
        return output


class _Builder(LocalFeatureBuilder):
    def build_output_nodes(self, view, input_node):
        node = FastOutputNode("output", self.dag_root.view, inputs=[input_node])
        self.nodes.append(node)
        return node


@contextlib.contextmanager
def window_files(source, start: dt.datetime, end: dt.datetime) -> Iterator[None]:
    """Point a view's source at the day files that can hold rows of [start, end] for one job.

    Feast filters on `CAST(event_timestamp AS TIMESTAMP)`, which DuckDB cannot check against
    a file's statistics, so a window of three days read every row of all ninety day files (at
    10M events, profiled while tests ran: 11 s of one more day's 70 s; 2.5 s with the window's
    files only). The files of the other days hold no row of the window
    (`export.DAY`: a file holds the rows of one UTC day), so Feast's own filter and dedup, run on
    hard links to the window's files in a folder of their own, return the same rows. The path is
    put back before Feast records the materialization in its registry."""
    path = Path(getattr(source, "path", "") or "")
    days = {f.stem: f for f in path.parent.glob("[0-9]*.parquet")} if path.name == GLOB else {}
    lo, hi = ((t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date().isoformat()
              for t in (start, end))
    keep = [f for d, f in days.items() if lo <= d <= hi]
    if not days or not keep:
        yield
        return
    folder = path.parent / f".window-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir()
        for f in keep:
            os.link(f, folder / f.name)
        source.file_options.uri = str(folder / GLOB)
        yield
    finally:
        source.file_options.uri = str(path)
        shutil.rmtree(folder, ignore_errors=True)


class ShoprecEngine(LocalComputeEngine):
    """LocalComputeEngine whose plans end in `FastOutputNode`."""

    def _materialize_one(self, registry: BaseRegistry, task: MaterializationTask, **kwargs):
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            with window_files(task.feature_view.batch_source, task.start_time, task.end_time):
                context = self.get_execution_context(registry, task)
                _Builder(registry, task, backend=self._get_backend(context)).build() \
                    .execute(context)
        except Exception as e:  # noqa: BLE001 - reported as Feast's engine reports it
            return LocalMaterializationJob(job_id=job_id,
                                           status=MaterializationJobStatus.ERROR, error=e)
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
