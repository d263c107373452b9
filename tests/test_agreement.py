"""One truth about valid data: whatever the gate passes, dbt builds and tests green, Feast
materializes and training reads; whatever dbt would reject, the gate rejects first.

Batches are generated (seeded, so a failure reproduces): any subset of the three tables, every
optional column null, absent or filled, empty strings, unicode, ids at the length limit, times at
both ends of the allowed range, and a share of batches broken in ways the contract forbids. They
are judged by the gate with a profile that switches every switchable rule off: the contract rules
alone must be enough for every later stage. Removing one contract rule on purpose must make the
property fail (`test_the_property_has_teeth`), so it cannot pass vacuously.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import pyarrow as pa
import pytest

from shoprec import contract
from shoprec.config import Settings
from shoprec.lake import write_batch

pytestmark = pytest.mark.slow

N_BATCHES = 240
UNICODE = ["Käse", "商品", "🙂 smile", "naïve café", "Ω≈ç√", " spaced ", "x" * 40, "ℝ", "'; drop"]
NOW = dt.datetime.now(dt.UTC)
EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)  # ValidationSettings.min_timestamp
LATEST = NOW + dt.timedelta(minutes=5)  # inside future_slack_minutes


@dataclass
class Generated:
    name: str
    tables: dict[str, pa.Table]
    broken: str | None  # the contract rule the batch breaks on purpose, if any


def _text(rng: random.Random, prefix: str) -> str | None:
    r = rng.random()
    if r < 0.2:
        return None
    if r < 0.3:
        return ""
    if r < 0.55:
        return rng.choice(UNICODE)
    return f"{prefix}{rng.randint(0, 20)}"


def _time(rng: random.Random, lo: dt.datetime = EARLIEST) -> dt.datetime:
    r = rng.random()
    if r < 0.05:
        return lo
    if r < 0.1:
        return LATEST
    return NOW - dt.timedelta(days=rng.uniform(0, 60), seconds=rng.randint(0, 86_400))


def _id(rng: random.Random, pool: list[str]) -> str:
    return rng.choice(pool)


def _table(kind: str, rows: list[dict], rng: random.Random) -> pa.Table:
    """Rows → a table of contract types; some optional columns left out entirely."""
    schema = contract.SCHEMAS[kind]
    fields = [f for f in schema
              if not (f.name in contract.OPTIONAL[kind] and rng.random() < 0.25)]
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in fields})


def generate(seed: int, n: int) -> list[Generated]:
    rng = random.Random(seed)
    items = [f"i{k}" for k in range(40)] + ["ü-7", "0042", "商品-1", "i" * 256]
    users = [f"u{k}" for k in range(30)] + ["Åsa", "007", "u" * 256]
    out: list[Generated] = []
    event_no = 0
    for b in range(n):
        kinds = rng.choice([("events",), ("events",), ("items",), ("users",), ("events", "items"),
                            ("events", "items", "users"), ("items", "users")])
        tables: dict[str, pa.Table] = {}
        if "items" in kinds:
            rows = [{"item_id": i, "title": _text(rng, "t"), "category": _text(rng, "c"),
                     "brand": _text(rng, "b"),
                     "price": rng.choice([None, 0.0, 9.99, 1_000_000.0]),
                     "created_at": rng.choice([None, dt.datetime(1901, 1, 1, tzinfo=dt.UTC),
                                               _time(rng)])}
                    for i in rng.sample(items, rng.randint(1, 12))]
            tables["items"] = _table("items", rows, rng)
        if "users" in kinds:
            rows = [{"user_id": u, "signup_at": rng.choice([None, _time(rng)]),
                     "country": _text(rng, "DE"), "segment": _text(rng, "s")}
                    for u in rng.sample(users, rng.randint(1, 10))]
            tables["users"] = _table("users", rows, rng)
        if "events" in kinds:
            rows = []
            for _ in range(rng.randint(1, 30)):
                event_no += 1
                rows.append({
                    "event_id": f"e{event_no}" if rng.random() > 0.05 else f"é-{event_no}",
                    "user_id": _id(rng, users), "item_id": _id(rng, items),
                    "event_type": rng.choice(contract.EVENT_TYPES),
                    "event_timestamp": _time(rng), "session_id": _text(rng, "s"),
                    "price": rng.choice([None, 0.0, 3.5, 1_000_000.0]),
                    "quantity": rng.choice([None, 1, 2, 10_000]),
                    "event_seq": rng.choice([None, event_no, 0, 2**62])})
            tables["events"] = _table("events", rows, rng)
        broken = None
        if rng.random() < 0.25:
            broken = _break(rng, tables)
        out.append(Generated(f"g{b:04d}", tables, broken))
    return out


def _set(table: pa.Table, column: str, index: int, value: object) -> pa.Table:
    values = table[column].to_pylist()
    values[index] = value
    return table.set_column(table.schema.get_field_index(column), column,
                            pa.array(values, table[column].type))


def _break(rng: random.Random, tables: dict[str, pa.Table]) -> str:
    """Break one contract rule in one table of the batch; returns the rule's name."""
    kind = rng.choice(sorted(tables))
    t = tables[kind]
    key = contract.KEYS[kind]
    i = rng.randrange(t.num_rows)
    how = rng.choice(["required", "unique_key", "max_length", "types", "columns", "event_type",
                      "empty"])
    if how == "required":
        col = rng.choice([f.name for f in contract.SCHEMAS[kind] if not f.nullable])
        t = _set(t, col, i, None)
    elif how == "unique_key":
        t = pa.concat_tables([t, t.slice(i, 1)])
    elif how == "max_length":
        t = _set(t, key, i, "k" * (contract.MAX_ID_LENGTH + 1))
    elif how == "types":
        t = t.set_column(t.schema.get_field_index(key), key,
                         pa.array(range(t.num_rows), pa.int64()))
    elif how == "columns":
        t = t.drop_columns([key])
    elif how == "event_type" and kind == "events":
        t = _set(t, "event_type", i, "refund")
    else:
        t, how = t.slice(0, 0), "empty"
    tables[kind] = t
    return how


def land(batches: list[Generated], settings: Settings, dataset: str) -> None:
    for g in batches:
        write_batch(g.name, g.tables, dataset=dataset, settings=settings)


def switch_off_habits(settings: Settings, dataset: str) -> None:
    """Every switchable rule off: only the contract stands between a batch and dbt."""
    from shoprec.validation.profile import SWITCHABLE

    path = settings.validation_profile(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[rules]\n" + "".join(f"{r} = false\n" for r in SWITCHABLE))


def gate(batches: list[Generated], settings: Settings, dataset: str, workers: int = 2):
    from shoprec.validation import validate

    land(batches, settings, dataset)
    switch_off_habits(settings, dataset)
    return {r.batch_id: r for r in validate(dataset=dataset, settings=settings, workers=workers)}


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(home=tmp_path_factory.mktemp("agreement"))
    batches = generate(seed=17, n=N_BATCHES)
    return settings, batches, gate(batches, settings, "gen")


def test_the_gate_rejects_every_broken_batch(judged) -> None:
    _, batches, results = judged
    broken = [g for g in batches if g.broken]
    assert len(broken) >= 30 and len(batches) - len(broken) >= 150  # both sides are exercised
    passed_broken = [(g.name, g.broken) for g in broken if results[g.name].status == "validated"]
    assert not passed_broken
    # valid batches pass: the contract rules do not reject what the contract allows
    refused = [(g.name, results[g.name].reason()) for g in batches
               if not g.broken and results[g.name].status != "validated"]
    assert not refused, refused[:5]


def test_what_the_gate_passed_builds_materializes_and_trains(judged) -> None:
    from shoprec.features.materialize import materialize
    from shoprec.transform import transform
    from training.train import train

    settings, _, results = judged
    assert sum(r.status == "validated" for r in results.values()) >= 150
    report = transform(settings=settings, dataset="gen")  # raises DbtError on any failed test
    assert report.counts
    materialize(settings=settings, dataset="gen")
    cfg = settings.training.model_copy(update={"protocol": "loo", "max_epochs": 1,
                                               "user_features": True})
    result = train(settings.model_copy(update={"training": cfg}), "gen", seed=1,
                   progress=False)
    assert result.metrics["model/test"]


def test_the_property_has_teeth(tmp_path_factory: pytest.TempPathFactory,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the not-null rule on events.user_id the gate passes a batch dbt rejects."""
    import great_expectations.expectations as gxe

    from shoprec.transform.runner import DbtError
    from shoprec.validation import suites

    original = suites.add_content

    def without_user_not_null(suite, kind, v, now, *args, **kwargs):
        original(suite, kind, v, now, *args, **kwargs)
        for e in list(suite.expectations):
            if isinstance(e, gxe.ExpectColumnValuesToNotBeNull) and e.column == "user_id":
                suite.delete_expectation(e)

    monkeypatch.setattr(suites, "add_content", without_user_not_null)
    settings = Settings(home=tmp_path_factory.mktemp("agreement-mutant"))
    batches = [g for g in generate(seed=17, n=60) if not g.broken]
    ev = next(g for g in batches if "events" in g.tables)
    ev.tables["events"] = _set(ev.tables["events"], "user_id", 0, None)
    results = gate(batches, settings, "gen", workers=1)  # in-process: the patch applies
    assert results[ev.name].status == "validated"
    with pytest.raises(DbtError, match="user_id"):
        from shoprec.transform import transform

        transform(settings=settings, dataset="gen")
