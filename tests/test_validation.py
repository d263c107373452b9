"""The validation gate: every catalogued fault is caught and named, nothing is lost or altered,
clean batches still get through, and re-runs are no-ops."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.config import Settings
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
    "schema_renamed": ("expect_table_columns_to_match_set", "price"),
    "schema_missing": ("expect_table_columns_to_match_set", "session_id"),
    "schema_extra": ("expect_table_columns_to_match_set", "coupon_code"),
    "wrong_dtype": ("expect_column_values_to_be_of_type", "price"),
    "empty_batch": ("expect_table_row_count_to_be_between", None),
    "corrupt_parquet": ("readable_parquet", None),
}


def _checksums(batch: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(batch.iterdir()) if f.is_file()}


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    """Two clean days, then one batch per fault (built from day 3's tables), in one run."""
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
    results = {r.batch_id: r for r in validate(settings=s)}
    return s, results, before


def test_every_fault_is_in_the_catalogue():
    assert set(EXPECTED) == set(FAULTS)


def test_clean_batches_get_through_beside_bad_ones(fault_run):
    s, results, _ = fault_run
    assert results["2026-01-05"].status == "validated"
    assert results["2026-01-06"].status == "validated"
    assert [b.name for b in list_batches("validated", settings=s)] == ["2026-01-05", "2026-01-06"]
    assert list_batches("landing", settings=s) == []


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_fault_is_caught_named_and_kept_byte_identical(fault_run, fault):
    s, results, before = fault_run
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
    s, _, _ = fault_run
    index = s.data_docs_dir / "index.html"
    assert index.exists()
    pages = list((s.data_docs_dir / "validations").rglob("*.html"))
    assert pages, "one page per validation result"


def test_revalidation_is_a_no_op(fault_run):
    s, results, _ = fault_run
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

    def broken(suite, kind, v, now):
        real(suite, kind, v, now)
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="user_id",
                                                                mostly=0.5, row_condition=None))
        suite.add_expectation(gxe.UnexpectedRowsExpectation(
            unexpected_rows_query="SELECT * FROM {batch} WHERE no_such_function(user_id)"))

    monkeypatch.setattr(suites, "add_content", broken)
    s = Settings(home=shoprec_home)
    simulate("tiny", seed=1, days=1, settings=s)
    with pytest.raises(ValidatorError, match="no_such_function"):
        validate(settings=s)
    assert [b.name for b in list_batches("landing", settings=s)] == ["2026-01-05"]
    assert list_batches("quarantine", settings=s) == []
