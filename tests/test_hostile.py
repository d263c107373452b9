"""The data path under hostile names: every attack is first reproduced (the folder, the param,
the symlink exist), then shown to read, write, move and run nothing outside its zone."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pytest

from shoprec.config import Settings
from shoprec.lake import find_batch, list_batches, write_batch
from shoprec.names import InvalidName, check_name, is_name, sql_literal
from shoprec.simulate import simulate
from shoprec.validation import validate

INJECTION = "2026-01-06x'; COPY (SELECT 42 AS pwned) TO 'pwned.csv'; SELECT '"
ESCAPES = ["../../esc", "/abs/path", "..", ".", "a/../../b", "a\\..\\b", "x\n", "", " ",
           "a'b", 'a"b', "ü", "a;b", "-rf", ".hidden", "a" * 129, "a..b", "~root"]


@pytest.fixture
def landed(tmp_path, monkeypatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # where an injected relative COPY would land
    s = Settings(home=tmp_path / "home")
    simulate("tiny", seed=4, days=3, settings=s)
    return s


def test_injected_folder_name_runs_no_sql_and_the_rest_validates(landed, tmp_path):
    s = landed
    last = list_batches("landing", settings=s)[-1]
    evil = s.zone("landing") / INJECTION
    os.rename(last, evil)  # the attack: a landing folder whose name is SQL
    assert evil.is_dir()
    results = {r.batch_id: r for r in validate(settings=s, workers=1)}
    assert not list(tmp_path.rglob("pwned.csv")) and not Path("pwned.csv").exists()
    assert results[INJECTION].status == "skipped" and evil.is_dir()  # left where it was
    assert [r.status for b, r in results.items() if b != INJECTION] == ["validated"] * 2


def test_batch_id_traversal_moves_nothing_from_outside(landed, tmp_path):
    victim = tmp_path / "outside" / "victim"
    victim.mkdir(parents=True)
    (victim / "events.parquet").write_bytes(b"secret")
    rel = os.path.relpath(victim, landed.zone("landing"))
    assert (landed.zone("landing") / rel).resolve() == victim  # the attack path reaches it
    with pytest.raises(InvalidName, match="batch name"):
        validate([rel], settings=landed, workers=1)
    assert (victim / "events.parquet").read_bytes() == b"secret"
    assert not landed.zone("quarantine").exists()


def test_a_symlink_out_of_the_zone_is_neither_read_nor_moved(landed, tmp_path):
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "events.parquet").write_bytes(b"secret")
    link = landed.zone("landing") / "2026-02-01"
    link.symlink_to(victim)
    results = {r.batch_id: r.status for r in validate(settings=landed, workers=1)}
    assert results["2026-02-01"] == "skipped" and link.is_symlink()
    assert (victim / "events.parquet").read_bytes() == b"secret"
    with pytest.raises(InvalidName):
        find_batch("2026-02-01", settings=landed)


@pytest.mark.parametrize("name", ["../../esc", "/abs/path", "a'b"])
def test_dataset_names_that_escape_or_quote_are_refused_everywhere(tmp_path, name):
    home = tmp_path / "home"
    with pytest.raises(ValueError, match="dataset name"):
        Settings(home=home, dataset=name)
    s = Settings(home=home)
    for build in (lambda: s.lake(name), lambda: s.zone("landing", name),
                  lambda: s.warehouse(name), lambda: s.feature_exports(name),
                  lambda: simulate("tiny", seed=1, days=1, dataset=name, settings=s),
                  lambda: validate(dataset=name, settings=s)):
        with pytest.raises(InvalidName):
            build()
    assert not any(tmp_path.rglob("*.parquet"))


def test_cli_refuses_a_bad_name_in_one_line(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "SHOPREC_HOME": str(tmp_path / "home")}
    for args in (["validate", "--batch", "../../../../etc"],
                 ["data", "simulate", "--scale", "tiny", "--dataset", "/abs/path"]):
        r = subprocess.run([sys.executable, "-m", "shoprec.cli", *args], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and "name" in r.stderr
    r = subprocess.run([sys.executable, "-m", "shoprec.cli", "info"],
                       env={**env, "SHOPREC_DATASET": "../x"}, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "dataset" in r.stderr


def _fuzz_names(n: int = 300) -> list[str]:
    rng = random.Random(16)
    alphabet = list("aZ09._-/\\'\";: \n\t~$`*?[]{}") + ["..", "é", "\u202e", "\x00", "💥"]
    out = list(ESCAPES)
    for _ in range(n):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
    out.append("a" * 4096)
    return out


def test_fuzzed_names_are_refused_or_stay_inside_their_zone(tmp_path):
    """Every entry point that turns a name into a path: either InvalidName, or a path under
    its zone that SQL quoting round-trips."""
    import duckdb

    from shoprec.importers.tabular import import_file

    s = Settings(home=tmp_path / "home")
    zone = s.zone("landing")
    con = duckdb.connect()
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,signup_at\nu1,2026-01-01T00:00:00Z\n")
    for name in _fuzz_names():
        if not is_name(name):  # the CLI's and the DAG's ways in: refused before any work
            for entry in (lambda n: validate([n], settings=s, workers=1),
                          lambda n: validate(dataset=n, settings=s, workers=1),
                          lambda n: import_file(csv, kind="users", batch_id=n, settings=s),
                          lambda n: import_file(csv, kind="users", dataset=n, settings=s)):
                with pytest.raises(InvalidName):
                    entry(name)
        ok = is_name(name)
        for entry in (lambda n: check_name(n, "batch"), s.lake, s.warehouse, s.runs_dir,
                      lambda n: find_batch(n, settings=s),
                      lambda n: write_batch(n, {}, settings=s)):
            if ok:
                with contextlib.suppress(FileExistsError):  # a good name drawn twice
                    entry(name)
            else:
                with pytest.raises(InvalidName):
                    entry(name)
        if ok:
            assert (zone / name).resolve().is_relative_to(zone.resolve())
            assert (s.lake(name)).resolve().is_relative_to(s.root)
        if "\x00" not in name:
            assert con.execute(f"SELECT {sql_literal(name)}").fetchone()[0] == name
    assert all(p.resolve().is_relative_to(tmp_path) for p in tmp_path.rglob("*"))


def test_dag_params_refuse_what_the_code_refuses():
    import jsonschema

    from shoprec.names import PATTERN_TEXT

    for name in _fuzz_names(100):
        schema_ok = True
        try:
            jsonschema.validate(name, {"type": "string", "pattern": PATTERN_TEXT})
        except jsonschema.ValidationError:
            schema_ok = False
        assert schema_ok == is_name(name), repr(name)


def test_a_file_linked_from_outside_makes_the_batch_unsafe(landed, tmp_path):
    secret = tmp_path / "secret.parquet"
    last = list_batches("landing", settings=landed)[-1]
    secret.write_bytes((last / "events.parquet").read_bytes())
    evil = landed.zone("landing") / "2026-03-01"
    evil.mkdir()
    (evil / "events.parquet").symlink_to(secret)
    results = {r.batch_id: r.status for r in validate(settings=landed, workers=1)}
    assert results["2026-03-01"] == "skipped"
    assert (evil / "events.parquet").is_symlink()
