"""The validation gate: every catalogued fault is caught and named, nothing is lost or altered,
clean batches still get through, and re-runs are no-ops."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.config import Settings
from shoprec.contract import conform
from shoprec.lake import list_batches, write_batch
from shoprec.simulate import simulate
from shoprec.simulate.faults import FAULTS, inject_files, inject_tables
from shoprec.validation import ValidatorError, validate

# fault → (rule, column) the report must name
EXPECTED = {
    "null_keys": ("expect_column_values_to_not_be_null", "user_id"),
    "unknown_event_type": ("expect_column_values_to_be_in_set", "event_type"),
    "future_timestamps": ("expect_column_values_to_be_between", "event_timestamp"),
    "negative_prices": ("expect_column_values_to_be_between", "price"),
    "duplicate_events": ("expect_column_values_to_be_unique", "event_id"),
    "unknown_items": ("unexpected_rows_expectation", "item_id"),
    "schema_renamed": ("expect_table_columns_to_match_set", "cost"),  # price: optional
    "schema_missing": ("expect_table_columns_to_match_set", "item_id"),
    "schema_extra": ("expect_table_columns_to_match_set", "coupon_code"),
    "wrong_dtype": ("expect_column_values_to_be_of_type", "price"),
    "empty_batch": ("expect_table_row_count_to_be_between", None),
    "corrupt_parquet": ("readable_parquet", None),
}


def _subsets(clean: dict[str, pa.Table], days: list[Path]) -> dict[str, dict[str, pa.Table]]:
    """Deliveries of a part of the contract: one table alone, each with only its required
    columns (conform fills the optional ones with nulls), and a batch holding no table. The
    events use only ids the clean `days` brought (the faulty batches hold the others)."""
    def only(kind: str, *cols: str) -> pa.Table:
        return conform(clean[kind].select(list(cols)), kind, f"{kind}.parquet")

    events = clean["events"]
    for kind, key in (("items", "item_id"), ("users", "user_id")):
        ids = pa.concat_arrays([pq.read_table(d / f"{kind}.parquet")[key].combine_chunks()
                                for d in days])
        events = events.filter(pc.is_in(events[key], value_set=ids))
    bare = events.select(["event_id", "user_id", "item_id", "event_type", "event_timestamp"])
    return {
        "subset-items": {"items": only("items", "item_id")},
        "subset-users": {"users": only("users", "user_id")},
        "subset-events": {"events": conform(bare, "events", "events.parquet")},
        # files without their optional columns at all (not through conform)
        "subset-absent": {"events": bare, "items": clean["items"].select(["item_id"]),
                          "users": clean["users"].select(["user_id"])},
        "subset-none": {},
    }


def _checksums(batch: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(batch.iterdir()) if f.is_file()}


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    """Two clean days, then one batch per fault (built from day 3's tables) and the partial
    deliveries of `_subsets`, in one run."""
    s = Settings(home=tmp_path_factory.mktemp("faults"))
    simulate("tiny", seed=11, days=3, settings=s)
    third = s.zone("landing") / "2026-01-07"
    clean = {f.stem: pq.read_table(f) for f in third.glob("*.parquet")}
    shutil.rmtree(third)  # its content lives on as the base of every faulty batch
    before = {}
    for fault in FAULTS:
        path = write_batch(f"fault-{fault}", inject_tables(clean, [fault]), settings=s)
        inject_files(path, [fault])
        before[fault] = _checksums(path)
    days = [s.zone("landing") / d for d in ("2026-01-05", "2026-01-06")]
    for name, tables in _subsets(clean, days).items():
        write_batch(name, tables, settings=s)
    alone = Settings(home=tmp_path_factory.mktemp("faults-alone"),
                     validation={"screen": False})
    shutil.copytree(s.home, alone.home, dirs_exist_ok=True)
    results = {r.batch_id: r for r in validate(settings=s)}
    return s, results, before, (alone, {r.batch_id: r for r in validate(settings=alone)})


def _seen(r, home: Path) -> str:
    """A result as text, without what differs between two runs: the home and the clock."""
    text = repr((r.status, r.note, r.rows, r.content_hash, r.failures))
    return re.sub(r"datetime\.datetime\([^)]*\)", "<time>", text.replace(str(home), "<home>"))


def test_the_screen_changes_no_verdict(fault_run):
    """Screening all batches at once, then judging only the flagged ones alone, gives every
    batch the verdict, report and counts of judging each one alone."""
    s, screened, _, (other, alone) = fault_run
    assert screened.keys() == alone.keys()
    for b, r in screened.items():
        assert _seen(r, s.root) == _seen(alone[b], other.root), b


def test_every_fault_is_in_the_catalogue():
    assert set(EXPECTED) == set(FAULTS)


def test_clean_batches_get_through_beside_bad_ones(fault_run):
    s, results, *_ = fault_run
    assert results["2026-01-05"].status == "validated"
    assert results["2026-01-06"].status == "validated"
    assert [b.name for b in list_batches("validated", settings=s)] == [
        "2026-01-05", "2026-01-06", "subset-absent", "subset-events", "subset-items",
        "subset-users"], {
            b: (r.status, r.reason(), r.note) for b, r in results.items() if "subset" in b}
    assert list_batches("landing", settings=s) == []


@pytest.mark.parametrize("batch", ["subset-items", "subset-users", "subset-events"])
def test_any_one_table_with_only_its_required_columns_is_a_delivery(fault_run, batch):
    s, results, *_ = fault_run
    r = results[batch]
    assert r.status == "validated", r.reason()
    assert r.path == s.zone("validated") / batch and r.profile == "default"
    kind = batch.removeprefix("subset-")
    assert list(r.rows) == [kind] and r.rows[kind] > 0
    # the optional columns are in the file, all null: the gate judged them, not their absence
    t = pq.read_table(r.path / f"{kind}.parquet")
    assert t.column_names == pq.read_schema(s.zone("validated") / "2026-01-05" /
                                            f"{kind}.parquet").names
    assert all(t[c].null_count == t.num_rows for c in t.column_names[1:] if c not in
               {"user_id", "item_id", "event_type", "event_timestamp"})


def test_optional_columns_may_be_absent_from_a_file(fault_run):
    s, results, *_ = fault_run
    r = results["subset-absent"]
    assert r.status == "validated", r.reason()
    assert pq.read_schema(r.path / "users.parquet").names == ["user_id"]  # kept as delivered


def test_a_renamed_optional_column_is_unexpected_and_its_absence_said(fault_run):
    _, results, *_ = fault_run
    (f,) = [f for f in results["fault-schema_renamed"].failures
            if f.rule == "expect_table_columns_to_match_set"]
    assert "unexpected ['cost']" in f.detail and "absent, read as null: ['price']" in f.detail


def test_a_batch_without_a_table_is_quarantined_by_name(fault_run):
    _, results, *_ = fault_run
    r = results["subset-none"]
    assert r.status == "quarantined"
    (f,) = r.failures
    assert (f.table, f.rule, f.column) == ("batch", "batch_has_a_table", None)
    assert f.line().startswith("batch: batch_has_a_table: ")
    assert all(n in f.line() for n in ("events.parquet", "items.parquet", "users.parquet"))


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_fault_is_caught_named_and_kept_byte_identical(fault_run, fault):
    s, results, before, _ = fault_run
    r = results[f"fault-{fault}"]
    assert r.status == "quarantined"
    rule, column = EXPECTED[fault]
    assert any(f.rule == rule and f.column == column for f in r.failures), r.failures
    line = next(f.line() for f in r.failures if f.rule == rule)
    assert "events.parquet" in line and rule in line
    if column:
        assert f"'{column}'" in line
    q = s.zone("quarantine") / f"fault-{fault}"
    assert r.path == q
    assert _checksums(q) == before[fault]  # moved whole, not one byte changed
    reason = (q / "_validation" / "reason.txt").read_text()
    assert rule in reason
    assert (q / "_validation" / "result.json").exists()


def test_data_docs_site_is_built(fault_run):
    s, *_ = fault_run
    index = s.data_docs_dir / "index.html"
    assert index.exists()
    pages = list((s.data_docs_dir / "validations").rglob("*.html"))
    # every GX result a quarantined batch's report holds has its page, whichever validation
    # worker built it (each worker's build used to delete the pages of the others)
    reports = s.zone("quarantine").glob("*/_validation/result.json")
    results = sum(len(json.loads(r.read_text())["gx"]) for r in reports)
    assert results > 0 and len(pages) >= results, (len(pages), results)


def test_revalidation_is_a_no_op(fault_run):
    s, results, *_ = fault_run
    assert validate(settings=s) == []  # nothing left in landing
    # the same bytes delivered again under the same id are recognised, not judged twice
    src = s.zone("quarantine") / "fault-null_keys"
    again = s.zone("landing") / "fault-null_keys"
    again.mkdir(parents=True)
    for f in src.glob("*.parquet"):
        shutil.copy(f, again / f.name)
    (r,) = validate(settings=s)
    assert r.status == "unchanged" and "already quarantined" in r.note
    assert again.exists()
    shutil.rmtree(again)


def test_cli_exit_codes_and_summary(shoprec_home):
    runner = CliRunner()
    assert runner.invoke(app, ["data", "simulate", "--scale", "tiny", "--days", "2"]).exit_code == 0
    ok = runner.invoke(app, ["validate"])
    assert ok.exit_code == 0, ok.output
    assert "2 validated, 0 quarantined" in ok.output
    bad = runner.invoke(app, ["data", "simulate", "--scale", "tiny", "--days", "3",
                              "--inject", "negative_prices"])
    assert bad.exit_code == 0
    res = runner.invoke(app, ["validate", "--batch", "2026-01-07"])
    assert res.exit_code == 1
    assert "column 'price'" in res.output and "1 quarantined" in res.output


def test_a_broken_validator_moves_nothing(shoprec_home, monkeypatch):
    """An expectation that raises is a broken validator, not bad data: no verdict at all."""
    import great_expectations.expectations as gxe

    from shoprec.validation import suites

    real = suites.add_content

    def broken(suite, kind, *args):
        real(suite, kind, *args)
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="user_id",
                                                                mostly=0.5, row_condition=None))
        suite.add_expectation(gxe.UnexpectedRowsExpectation(
            unexpected_rows_query="SELECT * FROM {batch} WHERE no_such_function(user_id)"))

    monkeypatch.setattr(suites, "add_content", broken)
    s = Settings(home=shoprec_home)
    # the screen passes the clean day; the faulty one is judged alone, by the broken suites
    simulate("tiny", seed=1, days=2, inject=["negative_prices"], settings=s)
    with pytest.raises(ValidatorError, match="no_such_function"):
        validate(settings=s)
    assert [b.name for b in list_batches("landing", settings=s)] == ["2026-01-05", "2026-01-06"]
    assert list_batches("quarantine", settings=s) == []


def test_a_broken_screen_judges_every_batch_alone(shoprec_home, monkeypatch, caplog):
    """The screen never decides a failure: when it breaks, each batch is judged alone."""
    from shoprec.validation import screen

    real = screen._metrics

    def broken(kind, *args):
        return [*real(kind, *args), ("SELECT _file, no_such_function(1) AS x FROM u_events "
                                     "GROUP BY _file", [("x", False)])]

    monkeypatch.setattr(screen, "_metrics", broken)
    s = Settings(home=shoprec_home)
    simulate("tiny", seed=1, days=2, inject=["negative_prices"], settings=s)
    results = {r.batch_id: r.status for r in validate(settings=s)}
    assert results == {"2026-01-05": "validated", "2026-01-06": "quarantined"}
    assert "judging its batches one by one" in caplog.text


def test_sessions_are_derived_only_where_session_id_is_null():
    """A user's events in time order; a new session at the first event and after a gap of more
    than the setting (here 30 minutes); a given session_id is kept."""
    from shoprec.validation.suites import sessions_sql

    rows = [  # event_id, user_id, minute, session_id → expected (derived, s_key, s_n)
        ("e1", "u1", 0, None, (True, "u1", 1)),
        ("e2", "u1", 30, None, (True, "u1", 1)),  # exactly the gap: same session
        ("e3", "u1", 61, None, (True, "u1", 2)),  # more than the gap: a new one
        ("e4", "u1", 61, None, (True, "u1", 2)),  # a tie: the same session either way
        ("e5", "u2", 5, None, (True, "u2", 1)),  # another user: their own numbering
        ("e6", "u2", 200, "s-9", (False, "s-9", 0)),  # given: kept
        ("e7", "u2", 201, None, (True, "u2", 2)),  # the given row still counts as activity
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE b (event_id VARCHAR, user_id VARCHAR, session_id VARCHAR, "
                "event_timestamp TIMESTAMPTZ, event_seq BIGINT)")
    con.executemany("INSERT INTO b VALUES (?, ?, ?, TIMESTAMPTZ '2026-01-05 00:00:00+00' + "
                    "to_minutes(?), NULL)", [(e, u, sid, m) for e, u, m, sid, _ in rows])
    got = dict(((e, (d, k, n)) for e, d, k, n in con.execute(
        f"SELECT event_id, derived, s_key, s_n FROM ({sessions_sql('b', 30)}) AS s").fetchall()))
    assert got == {e: want for e, *_, want in rows}


def test_the_screen_flags_only_the_batches_a_rule_fails_on(shoprec_home):
    """Clean batches pass the screen (no run of their own); each faulty one is flagged."""
    from shoprec.validation.judge import build_known_ids
    from shoprec.validation.screen import screen_batches

    s = Settings(home=shoprec_home)
    simulate("tiny", seed=3, days=3, settings=s)
    simulate("tiny", seed=3, days=5, inject=["duplicate_events", "unknown_items"], inject_day=3,
             settings=s)
    dirs = list_batches("landing", settings=s)
    known = build_known_ids(dirs, s, None, shoprec_home / "known.parquet")
    screened = screen_batches(dirs, s, known)
    assert [d.name for d in screened.flagged] == ["2026-01-08"]
    passed = {v.batch_dir.name: v for v in screened.passed}
    assert sorted(passed) == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-09"]
    assert all(v.rows["events"] > 0 and not v.failures for v in passed.values())
