"""One bad batch does not stop the shop's data for good: later batches that use what it
introduced wait (or warn, or fail, per policy) and go through once it is re-delivered fixed."""

from __future__ import annotations

import duckdb
import pytest

from shoprec.config import Settings, ValidationSettings
from shoprec.lake import list_batches
from shoprec.lifecycle import land_version
from shoprec.simulate import simulate
from shoprec.transform import transform
from shoprec.validation import validate


def _names(s: Settings, zone: str) -> list[str]:
    return [p.name for p in list_batches(zone, settings=s)]


def _landed(tmp_path, days: int, bad_day: int, policy: str = "wait") -> tuple[Settings, str]:
    s = Settings(home=tmp_path / "home",
                 validation=ValidationSettings(held_reference_policy=policy, workers=1))
    simulate("tiny", seed=9, days=days, settings=s, inject=["negative_prices"],
             inject_day=bad_day)
    return s, _names(s, "landing")[bad_day]


def _redeliver_fixed(s: Settings, batch: str, days: int, tmp_path) -> None:
    """The shop sends the bad day again, fixed: a new version of the same batch id, landed by
    `shoprec lake replace` (so it arrives last, and must still release what waits for it)."""
    clean = Settings(home=tmp_path / "clean")
    simulate("tiny", seed=9, days=days, settings=clean)
    land_version(batch, clean.zone("landing") / batch, settings=s)


@pytest.mark.slow
def test_bad_day_10_of_14_holds_only_what_needs_it_until_fixed(tmp_path):
    s, bad = _landed(tmp_path, days=14, bad_day=9)
    first = {r.batch_id: r for r in validate(settings=s)}
    assert first[bad].status == "quarantined"
    later = _names(s, "landing")
    assert later and all(b > bad for b in later)  # only what comes after waits
    assert all(first[b].status == "waiting" and bad in first[b].note for b in later[:1])
    assert len(_names(s, "validated")) == 9
    again = {r.batch_id: r.status for r in validate(settings=s)}  # judged again, still waiting
    assert set(again.values()) == {"waiting"}
    _redeliver_fixed(s, bad, 14, tmp_path)
    fixed = {r.batch_id: r.status for r in validate(settings=s)}
    assert fixed == {b: "validated" for b in [bad, *later]}
    assert _names(s, "landing") == [] and len(_names(s, "validated")) == 14
    report = transform(settings=s)
    with duckdb.connect(str(report.snapshot), read_only=True) as con:
        days = con.execute("select count(distinct event_date) from marts.fct_events").fetchone()
    assert days[0] >= 14


@pytest.mark.parametrize("policy,expected", [("warn", "validated"), ("fail", "quarantined")])
def test_other_policies_pass_with_a_warning_or_fail_with_the_reason(tmp_path, policy, expected):
    s, bad = _landed(tmp_path, days=4, bad_day=1, policy=policy)
    results = {r.batch_id: r for r in validate(settings=s)}
    assert results[bad].status == "quarantined"
    after = [b for b in results if b > bad]
    assert after and all(results[b].status == expected for b in after)
    r = results[after[0]]
    text = r.note if policy == "warn" else r.reason()
    assert f"held with quarantined/waiting batch {bad}" in text


def test_a_killed_run_between_move_and_ledger_is_recorded_on_the_next_run(tmp_path):
    from shoprec.validation.ledger import read_ledger

    s = Settings(home=tmp_path / "home", validation=ValidationSettings(workers=1))
    simulate("tiny", seed=9, days=2, settings=s)
    validate(settings=s)
    s.validation_ledger().unlink()  # as if the process died right after its last move
    validate(settings=s)
    assert {r["batch_id"] for r in read_ledger(s, None).values()} == set(_names(s, "validated"))
