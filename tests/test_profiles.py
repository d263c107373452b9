"""Validation profiles: a dataset's habits (a log without views, repeated events) are judged by
its own profile, in every worker; the contract is not negotiable; a bad profile is one line."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.config import Settings, ValidationSettings
from shoprec.contract import conform
from shoprec.lake import write_batch
from shoprec.validation import validate
from shoprec.validation.ledger import history
from shoprec.validation.profile import ProfileError, load_profile

T0 = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


def _batch(rows: list[tuple]) -> dict[str, pa.Table]:
    """(event_id, user_id, item_id, event_type, minute[, session_id]) rows → a batch with the
    items and users they use; only required columns and session_id are given."""
    rows = [(*r, None)[:6] for r in rows]
    e, u, i, t, m, sid = zip(*rows, strict=True)
    events = pa.table({"event_id": e, "user_id": u, "item_id": i, "event_type": t,
                       "event_timestamp": [T0 + dt.timedelta(minutes=x) for x in m],
                       "session_id": pa.array(sid, pa.string())})
    return {"events": conform(events, "events", "events.parquet"),
            "items": conform(pa.table({"item_id": sorted(set(i))}), "items", "items.parquet"),
            "users": conform(pa.table({"user_id": sorted(set(u))}), "users", "users.parquet")}


def _purchases(prefix: str) -> dict[str, pa.Table]:
    """A purchase-only log (no views at all); 4 of 20 events repeat another's user, item and
    timestamp under a new id: a 20% duplicate rate."""
    rows = [(f"{prefix}{n}", f"u{n % 5}", f"i{n % 10}", "purchase", n) for n in range(16)]
    rows += [(f"{prefix}dup{n}", f"u{n % 5}", f"i{n % 10}", "purchase", n) for n in range(4)]
    return _batch(rows)


# derived sessions (no session_id): 30 minutes of inactivity end one
GAP = _batch([("g1", "u1", "i1", "view", 0), ("g2", "u1", "i1", "purchase", 120)])
CHAIN = _batch([("c1", "u1", "i1", "view", 0), ("c2", "u1", "i1", "click", 25),
                ("c3", "u1", "i1", "purchase", 50),
                # a given session_id is kept, however long the pause
                ("c4", "u2", "i2", "view", 0, "s1"), ("c5", "u2", "i2", "purchase", 300, "s1")])
LOGS = "max_duplicate_rate = 0.25\n\n[rules]\nfunnel = false\nunknown_items = false\n"


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Dataset 'shop' (default profile) and 'logs' (a profile: no funnel, duplicates up to 25%)
    judged once; 'logs' in two worker processes, which get the profile through their settings."""
    s = Settings(home=tmp_path_factory.mktemp("profiles"))
    for name, tables in (("purchases", _purchases("p")), ("gap", GAP), ("chain", CHAIN)):
        write_batch(name, tables, dataset="shop", settings=s)
    for name in ("purchases", "purchases-2"):
        write_batch(name, _purchases(name), dataset="logs", settings=s)
    held = _batch([("h1", "u1", "x1", "view", 0)])  # brings item x1, in a broken catalogue
    held["items"] = pa.concat_tables([held["items"]] * 2)
    write_batch("held-items", held, dataset="logs", settings=s)
    uses = _batch([("h2", "u1", "x1", "view", 5)])
    del uses["items"]  # x1 is only in the held catalogue
    write_batch("uses-held", uses, dataset="logs", settings=s)
    s.validation_profile("logs").parent.mkdir(parents=True, exist_ok=True)
    s.validation_profile("logs").write_text(LOGS)
    shop = {r.batch_id: r for r in validate(dataset="shop", settings=s, workers=1)}
    logs = {r.batch_id: r for r in validate(dataset="logs", settings=s, workers=2)}
    return s, shop, logs


def test_a_purchase_only_log_fails_the_funnel_by_default_with_the_fix_named(judged):
    s, shop, _ = judged
    r = shop["purchases"]
    assert r.status == "quarantined" and r.profile == "default"
    by = {f.switch: f for f in r.failures}
    assert set(by) == {"funnel", "duplicates"}, r.failures
    assert ("a log without views? `shoprec data profile --set rules.funnel=false` (or --set "
            "max_funnel_violation_rate=...), then `shoprec lake requeue` the batch"
            ) in by["funnel"].line()
    assert "\n" not in by["funnel"].line()
    report = json.loads((r.path / "_validation" / "result.json").read_text())
    assert report["profile"] == "default"


def test_the_profile_switches_the_funnel_off_and_raises_a_threshold(judged):
    s, _, logs = judged
    assert {b: r.status for b, r in logs.items() if b.startswith("purchases")} == {
        "purchases": "validated", "purchases-2": "validated"}
    path = str(s.validation_profile("logs"))
    assert {r.batch_id: r.profile for r in logs.values()} == dict.fromkeys(logs, path)
    assert {rec["profile"] for rec in history(s, "logs")} == {path}


def test_without_the_unknown_items_rule_no_batch_waits_for_a_held_catalogue(judged):
    _, _, logs = judged
    assert logs["held-items"].status == "quarantined"  # the catalogue repeats its key
    assert logs["uses-held"].status == "validated", logs["uses-held"].note  # not "waiting"


def test_the_funnel_uses_derived_sessions_where_session_id_is_null(judged):
    _, shop, _ = judged
    gap = shop["gap"]  # the view was two hours before: another session
    assert gap.status == "quarantined"
    assert [f.switch for f in gap.failures] == ["funnel"]
    assert "1 of 1 rows" in gap.failures[0].detail and "g2" in gap.failures[0].detail
    assert shop["chain"].status == "validated", shop["chain"].reason()


def test_no_profile_is_the_default_profile(settings):
    p = load_profile(settings)
    assert not p.found and p.validation == settings.validation and p.label == "default"


def test_rules_switch_on_and_off_over_the_environment(shoprec_home, monkeypatch):
    monkeypatch.setenv("SHOPREC_VALIDATION__SKIP_RULES", '["funnel", "time_range"]')
    s = Settings()
    assert s.validation.skip_rules == ["funnel", "time_range"]
    s.validation_profile().parent.mkdir(parents=True)
    s.validation_profile().write_text("sample_size = 3\n[rules]\nfunnel = true\n"
                                      "duplicates = false\n")
    p = load_profile(s)
    assert p.validation.skip_rules == ["duplicates", "time_range"]
    assert p.validation.sample_size == 3 and p.keys == {"sample_size", "rules.funnel",
                                                         "rules.duplicates"}
    monkeypatch.setenv("SHOPREC_VALIDATION__SKIP_RULES", '["unique_key"]')
    with pytest.raises(ValidationError, match="funnel"):
        Settings()


@pytest.mark.parametrize("text, names", [
    ("max_funnel_rate = 0.5\n", ["unknown key 'max_funnel_rate'", "max_funnel_violation_rate"]),
    ("[rules]\nfunnels = false\n", ["[rules] funnels", "unknown rule", "'funnel'"]),
    ("[rules]\nunique_key = false\n", ["[rules] unique_key", "contract rule, not switchable"]),
    ("[rules]\ntypes = false\n", ["[rules] types", "contract rule"]),
    ("max_quantity = \"lots\"\n", ["key 'max_quantity'", "integer", "'lots'"]),
    ("max_duplicate_rate = 2.0\n", ["key 'max_duplicate_rate'", "less than or equal to 1"]),
    ("[rules]\nfunnel = \"no\"\n", ["[rules] funnel", "true or false"]),
    ("skip_rules = [\"funnel\"]\n", ["key 'skip_rules'", "[rules]"]),
    ("rules = 1\n", ["'rules' must be a table", "funnel"]),
    ("funnel = false\n[rules\n", ["not valid TOML"]),
])
def test_a_bad_profile_is_one_line_naming_file_key_and_choices(settings, text, names):
    path = settings.validation_profile()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(settings)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ")
    for n in names:
        assert n in msg, msg


def test_validate_with_a_bad_profile_moves_nothing_and_says_one_line(tmp_path):
    import os

    s = Settings(home=tmp_path / "home")
    write_batch("chain", CHAIN, settings=s)
    s.validation_profile().parent.mkdir(parents=True)
    s.validation_profile().write_text("[rules]\nevent_type = false\n")
    with pytest.raises(ProfileError, match="contract rule"):
        validate(settings=s, workers=1)
    r = subprocess.run([sys.executable, "-m", "shoprec.cli", "validate"], capture_output=True,
                       text=True, env={**os.environ, "SHOPREC_HOME": str(s.home)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "[rules] event_type" in r.stderr
    assert (s.zone("landing") / "chain").is_dir()


def test_cli_init_writes_a_template_then_shows_the_profile(shoprec_home):
    runner = CliRunner()
    path = Settings().validation_profile("shop")
    before = runner.invoke(app, ["data", "profile"])
    assert before.exit_code == 0 and f"default (no {path}" in before.output
    init = runner.invoke(app, ["data", "profile", "--init"])
    assert init.exit_code == 0 and path.is_file()
    assert load_profile(Settings()).validation == ValidationSettings()  # all commented out
    path.write_text(path.read_text().replace("# funnel = true", "funnel = false")
                    .replace("# max_quantity = 10000", "max_quantity = 50"))
    shown = runner.invoke(app, ["data", "profile", "--dataset", "shop"])
    assert shown.exit_code == 0, shown.output
    assert f"from {path}" in shown.output
    assert "max_quantity = 50  # profile" in shown.output
    assert "funnel = false  # off, profile" in shown.output
    assert "duplicates = true  # on" in shown.output
    again = runner.invoke(app, ["data", "profile", "--init"])
    assert isinstance(again.exception, ProfileError) and "exists already" in str(again.exception)
    assert "max_quantity = 50" in path.read_text()  # not overwritten


def test_cli_set_changes_keys_and_keeps_the_rest(shoprec_home):
    runner = CliRunner()
    path = Settings().validation_profile("shop")
    ok = runner.invoke(app, ["data", "profile", "--set", "rules.funnel=false",
                             "--set", "max_duplicate_rate=0.05",
                             "--set", "held_reference_policy=warn"])
    assert ok.exit_code == 0, ok.output
    p = load_profile(Settings())
    assert p.validation.skip_rules == ["funnel"] and p.validation.max_duplicate_rate == 0.05
    assert p.validation.held_reference_policy == "warn"
    assert "# max_quantity = 10000" in path.read_text()  # the template's other lines stay
    before = path.read_text()
    for bad in ("rules.required=false", "max_quantity=lots", "funnel"):
        r = runner.invoke(app, ["data", "profile", "--set", "sample_size=3", "--set", bad])
        assert isinstance(r.exception, ProfileError), (bad, r.output)
        assert str(path) in str(r.exception) and "\n" not in str(r.exception)
    assert path.read_text() == before  # a refused change writes nothing


def test_a_quarantined_batch_is_judged_again_after_the_profile_changed(shoprec_home):
    """The hint's two commands, as a user runs them: the batch passes without being re-sent;
    the newest refused version is the one judged again, even when an older one holds the name."""
    from shoprec.lifecycle import land_tables

    s = Settings(home=shoprec_home)
    write_batch("orders", _purchases("o"), settings=s)
    assert validate(settings=s, workers=1)[0].status == "quarantined"
    land_tables("orders", _purchases("v2-"), settings=s)  # a second version, refused too
    second = validate(settings=s, workers=1)[0]
    assert second.status == "quarantined" and second.path.name.startswith("orders~")
    runner = CliRunner()
    for args in (["data", "profile", "--set", "rules.funnel=false", "--set",
                  "rules.duplicates=false"], ["lake", "requeue", "orders"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    assert f"from {second.path.name}" in " ".join(res.output.split())
    assert (s.zone("landing") / "orders" / "_validation.previous" / "reason.txt").is_file()
    again = validate(settings=s, workers=1)[0]
    assert again.status == "validated", again.reason()
    assert "v2-0" in pa.parquet.read_table(again.path / "events.parquet")["event_id"].to_pylist()
    assert [r["status"] for r in history(s, None, "orders")][-2:] == ["requeued", "validated"]
    res = runner.invoke(app, ["lake", "requeue", "orders"])  # the first version: out of date
    assert res.exit_code != 0 and "a newer version is validated" in str(res.exception)
