"""A batch after it was accepted: retracted, corrected by a later version, re-delivering events
another batch already brought; the ledger says what happened and the warehouse follows."""

from __future__ import annotations

import json

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shoprec.config import Settings, ValidationSettings
from shoprec.lake import delivery, list_batches, write_batch
from shoprec.lifecycle import LifecycleError, land_version, rebuild_needed, retract
from shoprec.simulate import simulate
from shoprec.transform import transform
from shoprec.validation import validate
from shoprec.validation.ledger import history


@pytest.fixture
def shop(tmp_path) -> Settings:
    s = Settings(home=tmp_path / "home", validation=ValidationSettings(workers=1))
    simulate("tiny", seed=12, days=3, settings=s)
    assert all(r.status == "validated" for r in validate(settings=s))
    transform(settings=s)
    return s


def _events(s: Settings, where: str = "true") -> list:
    with duckdb.connect(str(s.internal_snapshot()), read_only=True) as con:
        return con.execute(f"select event_id, batch_id, price from marts.fct_events "
                           f"where {where} order by event_id").fetchall()


def test_retract_takes_a_batch_out_of_the_warehouse_and_keeps_it(shop):
    s = shop
    day2 = list_batches("validated", settings=s)[1].name
    assert _events(s, f"batch_id = '{day2}'")
    move = retract(day2, "supplier sent test orders", settings=s)
    assert move.path.parent == s.zone("quarantine")
    assert (move.path / "_validation" / "reason.txt").read_text().startswith("retracted:")
    assert rebuild_needed(s, None, "dbt") and rebuild_needed(s, None, "feast")
    transform(settings=s)  # the marker makes this a full refresh
    assert _events(s, f"batch_id = '{day2}'") == []
    assert not rebuild_needed(s, None, "dbt") and rebuild_needed(s, None, "feast")
    assert [r["status"] for r in history(s, None, day2)] == ["validated", "retracted"]
    with pytest.raises(LifecycleError, match="not validated"):
        retract(day2, "again", settings=s)


def test_a_corrected_version_supersedes_the_validated_one(shop, tmp_path):
    s = shop
    day1 = list_batches("validated", settings=s)[0]
    events = pq.read_table(day1 / "events.parquet")
    fixed_id = events.column("event_id")[0].as_py()
    price = pc.if_else(pc.equal(events.column("event_id"), fixed_id), 123.45,
                       events.column("price"))
    src = tmp_path / "fix"
    src.mkdir()
    pq.write_table(events.set_column(events.schema.get_field_index("price"), "price", price),
                   src / "events.parquet")
    for t in ("items", "users"):
        if (day1 / f"{t}.parquet").exists():
            pq.write_table(pq.read_table(day1 / f"{t}.parquet"), src / f"{t}.parquet")
    land_version(day1.name, src, settings=s)
    results = {r.batch_id: r for r in validate(settings=s)}
    assert results[day1.name].status == "validated" and "supersedes" in results[day1.name].note
    old = [p for p in list_batches("quarantine", settings=s) if p.name.startswith(day1.name)]
    assert len(old) == 1 and delivery(old[0])["arrival"] < delivery(day1)["arrival"]
    transform(settings=s)
    assert _events(s, f"event_id = '{fixed_id}'")[0][2] == pytest.approx(123.45)
    assert [r["status"] for r in history(s, None, day1.name)] == [
        "validated", "landed", "superseded", "validated"]


def test_redelivered_events_count_once_by_arrival_not_by_name(tmp_path):
    s = Settings(home=tmp_path / "home", validation=ValidationSettings(workers=1))
    simulate("tiny", seed=12, days=1, settings=s)
    day = list_batches("landing", settings=s)[0]
    tables = {t: pq.read_table(day / f"{t}.parquet") for t in ("events", "items", "users")}
    # the same events again under a batch whose name sorts first but which arrives later
    write_batch("2000-01-01-resend", {"events": tables["events"].slice(0, 50)}, settings=s)
    results = {r.batch_id: r for r in validate(settings=s)}
    assert results["2000-01-01-resend"].status == "validated"
    assert "50 event_ids already delivered" in results["2000-01-01-resend"].note
    transform(settings=s)
    kept = {b for _, b, _ in _events(s)}
    assert kept == {day.name}  # the first arrival counts, though its name sorts later


def test_reimporting_a_changed_file_under_its_batch_id_lands_a_new_version(tmp_path):
    from shoprec.importers.tabular import import_file

    s = Settings(home=tmp_path / "home", validation=ValidationSettings(workers=1))
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,signup_at,country\nu1,2026-01-01T00:00:00Z,DE\n"
                   "u2,2026-01-02T00:00:00Z,FR\n")
    first = import_file(csv, kind="users", batch_id="crm-export", settings=s)
    assert not first.skipped
    again = import_file(csv, kind="users", batch_id="crm-export", settings=s)
    assert again.skipped and "nothing to do" in again.summary()  # same bytes: a re-run
    csv.write_text("user_id,signup_at,country\nu1,2026-01-01T00:00:00Z,DE\n"
                   "u2,2026-01-02T00:00:00Z,IT\n")  # one corrected row
    fixed = import_file(csv, kind="users", batch_id="crm-export", settings=s)
    assert not fixed.skipped and "new version" in fixed.summary()
    landed = pq.read_table(s.zone("landing") / "crm-export" / "users.parquet")
    assert landed.column("country").to_pylist() == ["DE", "IT"]
    superseded = [p.name for p in list_batches("quarantine", settings=s)]
    assert len(superseded) == 1 and superseded[0].startswith("crm-export")
    assert [r["status"] for r in history(s, None, "crm-export")] == ["superseded", "landed"]


@pytest.mark.slow
def test_retract_with_rebuild_removes_its_users_from_the_online_store(shop):
    from shoprec.features.materialize import materialize
    from shoprec.features.store import get_store
    from shoprec.lifecycle import rebuild_derived

    s = shop
    materialize(settings=s)
    last = list_batches("validated", settings=s)[-1]
    users = pq.read_table(last / "users.parquet").column("user_id").to_pylist()[:5]

    def online() -> list:
        return get_store(s).get_online_features(
            features=["user_daily:views_7d"],
            entity_rows=[{"user_id": u} for u in users]).to_dict()["views_7d"]

    assert any(v is not None for v in online())
    retract(last.name, "a test delivery", settings=s)
    done = rebuild_derived(s, "shop")
    assert set(done) == {"dbt", "feast"} and not s.rebuild_marker().exists()
    assert online() == [None] * len(users)  # users only that batch brought are gone


@pytest.mark.slow
def test_a_batch_validated_after_a_later_arrival_rebuilds_instead_of_breaking(tmp_path):
    """A arrives before B and both carry one event; B is validated and built first. When A goes
    through, the event counts from A (first arrival) and the warehouse is rebuilt in full, not
    broken by dbt's batch-keyed increments."""
    import pyarrow as pa

    s = Settings(home=tmp_path / "home", validation=ValidationSettings(workers=1))
    simulate("tiny", seed=12, days=1, settings=s)
    day = list_batches("landing", settings=s)[0]
    assert [r.status for r in validate([day.name], settings=s)] == ["validated"]
    events = pq.read_table(s.zone("validated") / day.name / "events.parquet")
    events = events.filter(pc.equal(events.column("event_type"), "view"))  # no funnel rule
    shared = events.slice(0, 1)
    write_batch("zz-a", {"events": pa.concat_tables([shared, events.slice(10, 5)])}, settings=s)
    write_batch("zz-b", {"events": pa.concat_tables([shared, events.slice(20, 5)])}, settings=s)
    assert [r.status for r in validate(["zz-b"], settings=s)] == ["validated"]
    transform(settings=s)
    assert [r.status for r in validate(["zz-a"], settings=s)] == ["validated"]
    assert rebuild_needed(s, None, "dbt")  # zz-a counts before zz-b, which is already built
    transform(settings=s)
    eid = shared.column("event_id")[0].as_py()
    assert _events(s, f"event_id = '{eid}'")[0][1] == day.name  # the first delivery of all


@pytest.mark.slow
def test_an_old_lake_without_arrival_numbers_is_numbered_before_anything_new(shop, tmp_path):
    s = shop
    for d in list_batches("validated", settings=s):
        (d / "_delivery.json").unlink()
    s.arrival_counter().unlink()
    day1 = list_batches("validated", settings=s)[0]
    src = tmp_path / "again"
    src.mkdir()
    for f in day1.glob("*.parquet"):
        (src / f.name).write_bytes(f.read_bytes())
    pq.write_table(pq.read_table(day1 / "events.parquet").slice(1), src / "events.parquet")
    land_version(day1.name, src, settings=s)
    old = delivery(day1)
    assert old["arrival"] == 1  # numbered in name order before the new version got its number
    results = {r.batch_id: r for r in validate(settings=s)}
    assert results[day1.name].status == "validated", results[day1.name].reason()
    assert delivery(s.zone("validated") / day1.name)["position"] == old["position"]


def test_a_foreign_or_broken_sidecar_is_replaced_not_trusted(tmp_path):
    s = Settings(home=tmp_path / "home", validation=ValidationSettings(workers=1))
    simulate("tiny", seed=12, days=2, settings=s)
    a, b = list_batches("landing", settings=s)
    (a / "_delivery.json").write_text(json.dumps({"batch_id": a.name, "arrival": "abc"}))
    (b / "_delivery.json").write_text((a / "_delivery.json").read_text())  # not its own
    assert {r.status for r in validate(settings=s)} == {"validated"}
    arrivals = [delivery(s.zone("validated") / d.name)["arrival"] for d in (a, b)]
    assert all(isinstance(x, int) for x in arrivals) and len(set(arrivals)) == 2


@pytest.mark.slow
def test_reconcile_adds_nothing_when_the_same_bytes_live_under_two_names(shop):
    import shutil

    s = shop
    day1 = list_batches("validated", settings=s)[0]
    copy = s.zone("landing") / "resent-day1"
    shutil.copytree(day1, copy)
    (copy / "_delivery.json").unlink()
    validate(settings=s)
    before = len(history(s, None))
    validate(settings=s)
    validate(settings=s)
    assert len(history(s, None)) == before
