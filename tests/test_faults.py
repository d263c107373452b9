"""Faults, seen from the shell: validation workers die with a killed parent and nothing is lost,
normal runs end without library noise, and every expected failure ends in one line and an exit
code, without a traceback unless -v asks for it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from shoprec.config import Settings
from shoprec.lake import list_batches
from shoprec.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent

# CLI processes started, killed and timed out: part of `make test`, not of the inner loop
pytestmark = pytest.mark.slow


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SHOPREC_VERBOSE"}
    return {**env, "SHOPREC_HOME": str(home), **extra}


def _cli(home: Path, *args: str, timeout: float = 300, **extra: str,
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoprec.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, env=_env(home, **extra), timeout=timeout)


def _python(home: Path, code: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True,
                          capture_output=True, env=_env(home, **extra), timeout=300)


def _clean(r: subprocess.CompletedProcess) -> None:
    out = r.stdout + r.stderr
    assert "Traceback" not in out and "leaked" not in out, out


def _one_line(r: subprocess.CompletedProcess, code: int) -> str:
    """The failure's only stderr line (asserting the exit code and no noise)."""
    assert r.returncode == code, r.stdout + r.stderr
    _clean(r)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# ------------------------------------------------------------ workers die with their parent


def _parquet_sums(zone: Path) -> dict[str, str]:
    return {f"{f.parent.name}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(zone.glob("*/*.parquet"))}


def _workers(cli: psutil.Process) -> list[psutil.Process]:
    found = []
    for p in cli.children(recursive=True):
        try:
            if "shoprec.validation.worker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def _wait_for_workers(proc: subprocess.Popen, n: int, timeout: float = 120,
                      ) -> list[psutil.Process]:
    cli = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _workers(cli)
        if len(found) >= n:
            return found
        assert proc.poll() is None, "validate ended before its workers were seen"
        time.sleep(0.05)
    raise AssertionError(f"no {n} validation workers within {timeout} s")


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE  # dead, waiting for init to reap it
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(p) for p in procs):
        time.sleep(0.1)
    return [p for p in procs if not _gone(p)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_validate_leaves_no_worker_and_a_rerun_loses_nothing(tmp_path, sig):
    s = Settings(home=tmp_path / "home")
    simulate("tiny", seed=5, days=6, settings=s)
    landed = _parquet_sums(s.zone("landing"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # without the screen every batch is judged alone, in the two workers this test kills (the
    # screen runs in the CLI's own process and would pass these clean days without them)
    env = _env(s.home, SHOPREC_VALIDATION__WORKERS="2", SHOPREC_VALIDATION__SCREEN="false",
               TMPDIR=str(tmp))
    # files, not pipes: an orphaned worker would hold a pipe open and make reading it wait
    with (tmp_path / "err.txt").open("w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "shoprec.cli", "validate"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        workers = _wait_for_workers(proc, 2)
        time.sleep(1.0)  # past their start-up: judging, seconds from an answer
        assert not any(_gone(w) for w in workers), "workers ended before the kill: moot test"
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _wait_gone(workers, timeout=3) == [], "a validation worker outlived its parent"
    assert not list(tmp.rglob("result-*.json")), "a worker went on to answer a dead parent"
    err = (tmp_path / "err.txt").read_text()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "Traceback" not in err, err
        assert not list(tmp.glob("shoprec-known-*")), "SIGTERM skipped the clean-up"
    # nothing moved half-way: every batch whole, in landing or validated
    assert {**_parquet_sums(s.zone("landing")), **_parquet_sums(s.zone("validated"))} == landed
    rerun = subprocess.run([sys.executable, "-m", "shoprec.cli", "validate"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    _clean(rerun)
    assert list_batches("landing", settings=s) == []
    assert _parquet_sums(s.zone("validated")) == landed


# ------------------------------------------------------------------------- a clean console


def test_duckdb_connection_left_by_ibis_is_released_at_exit(tmp_path):
    """A DuckDB connection with a Python UDF still open at exit (ibis's default backend, as
    Feast's offline store leaves it) makes nanobind print its leak report at teardown."""
    leaky = """
        import sys
        import ibis
        con = ibis.get_backend().con
        con.create_function("one", lambda: 1, [], "BIGINT")
        con.sql("SELECT one()").fetchall()
        sys.argv = ["shoprec", "info"]
    """
    control = _python(tmp_path, leaky)
    if "leaked" not in control.stderr:
        pytest.skip("this DuckDB no longer reports leaks: nothing to guard against")
    leaky = textwrap.dedent(leaky)
    released = _python(tmp_path, leaky + "from shoprec import quiet\nquiet.release_duckdb()\n")
    assert released.returncode == 0 and released.stderr == "", released.stderr
    r = _python(tmp_path, leaky + "from shoprec.cli import main\nmain()\n")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "cache = " in r.stdout  # the last line of `info`: stdout flushed before the exit


def test_validating_in_process_ends_clean(tmp_path):
    """One batch is judged in-process (Great Expectations over DuckDB): the summary, no noise."""
    s = Settings(home=tmp_path / "home")
    simulate("tiny", seed=5, days=1, settings=s)
    r = _cli(s.home, "validate")
    assert r.returncode == 0, r.stderr
    _clean(r)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("validate 1 validated"), r.stderr
    assert "warning" not in r.stderr.lower()


NOISY = """
    import logging
    import sys
    import warnings

    from shoprec import cli

    @cli.app.command("noisy")
    def noisy() -> None:
        warnings.warn("Stream feature views are experimental", RuntimeWarning)
        logging.getLogger("great_expectations.core").warning("gx chatter")
        logging.getLogger("shoprec.validation.judge").warning("Data Docs not built: ours")

    sys.argv = ["shoprec", *sys.argv[1:]]
    cli.main()
"""


def test_third_party_warnings_stay_off_the_console_unless_verbose(tmp_path):
    quiet = subprocess.run([sys.executable, "-c", textwrap.dedent(NOISY), "noisy"], cwd=ROOT,
                           text=True, capture_output=True, env=_env(tmp_path), timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "experimental" not in quiet.stderr and "gx chatter" not in quiet.stderr
    assert "Data Docs not built: ours" in quiet.stderr  # our own warnings still show
    for flag, extra in ((["-v"], {}), ([], {"SHOPREC_VERBOSE": "1"})):
        loud = subprocess.run([sys.executable, "-c", textwrap.dedent(NOISY), *flag, "noisy"],
                              cwd=ROOT, text=True, capture_output=True,
                              env=_env(tmp_path, **extra), timeout=120)
        assert loud.returncode == 0, loud.stderr
        assert "experimental" in loud.stderr and "gx chatter" in loud.stderr


# ------------------------------------------------------- expected failures: one line, a code


def test_unknown_batch_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    line = _one_line(_cli(tmp_path, "validate", "--batch", "nope"), 2)
    assert "batch 'nope' not found" in line
    loud = _cli(tmp_path, "-v", "validate", "--batch", "nope")
    assert loud.returncode == 2 and "Traceback" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == line


def test_input_errors_are_one_line_exit_2(tmp_path):
    assert "dataset name '../x' is not allowed" in _one_line(
        _cli(tmp_path, "info", "--dataset", "../x"), 2)  # InvalidName
    assert "setting validation.workers" in _one_line(
        _cli(tmp_path, "info", SHOPREC_VALIDATION__WORKERS="many"), 2)  # pydantic
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert "missing required column" in _one_line(
        _cli(tmp_path, "data", "import", "file", str(bad)), 2)  # ContractError
    assert "no such file" in _one_line(
        _cli(tmp_path, "data", "import", "file", str(tmp_path / "none.csv")), 2)
    assert "shoprec transform --dataset acme" in _one_line(
        _cli(tmp_path, "train", "--dataset", "acme"), 2)  # TrainingDataError


def test_evaluate_of_a_missing_or_half_written_run_is_one_line(tmp_path):
    run = tmp_path / "runs" / "20260101T000000Z"
    run.mkdir(parents=True)
    line = _one_line(_cli(tmp_path, "evaluate", str(run)), 2)
    assert str(run / "export" / "metadata.json") in line
    (run / "export").mkdir()
    (run / "export" / "metadata.json").write_text('{"format": ')  # cut off mid-write
    assert "half-written" in _one_line(_cli(tmp_path, "evaluate", str(run)), 2)


def test_a_failing_dbt_build_exits_1_without_a_traceback(tmp_path):
    r = _cli(tmp_path, "transform")  # an empty lake: staging finds no validated batch
    assert r.returncode == 1, r.stdout + r.stderr
    _clean(r)
    assert "dbt build failed" in r.stderr.splitlines()[0]


RAISES = """
    import sys

    from shoprec import cli

    @cli.app.command("boom")
    def boom(kind: str) -> None:
        if kind == "redis":
            import redis
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1.")
        from shoprec.transform.runner import DbtError
        raise DbtError("dbt build failed: stg_x: error: Runtime Error\\n  IO Error: no files")

    sys.argv = ["shoprec", "boom", *sys.argv[1:]]
    cli.main()
"""


@pytest.mark.parametrize("kind, expect", [
    ("redis", "error: Redis at 127.0.0.1:1 unreachable (SHOPREC_FEAST__REDIS_CONNECTION): "
              "Error 111 connecting to 127.0.0.1:1."),
    ("dbt", "error: dbt build failed: stg_x: error: Runtime Error IO Error: no files"),
])
def test_service_and_stage_failures_anywhere_are_one_line_exit_1(tmp_path, kind, expect):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(RAISES), kind], cwd=ROOT,
                       text=True, capture_output=True, timeout=120,
                       env=_env(tmp_path, SHOPREC_FEAST__REDIS_CONNECTION="127.0.0.1:1"))
    assert _one_line(r, 1) == expect


@pytest.mark.slow
def test_unreachable_redis_is_one_line_exit_1(tmp_path):
    env = {"SHOPREC_FEAST__ONLINE_STORE": "redis",
           "SHOPREC_FEAST__REDIS_CONNECTION": "127.0.0.1:1"}  # nothing listens on port 1
    applied = _cli(tmp_path, "features", "apply", **env)
    assert applied.returncode == 0, applied.stderr
    line = _one_line(_cli(tmp_path, "features", "get", "u1", **env), 1)
    assert "Redis at 127.0.0.1:1" in line and "unreachable" in line


# ------------------------------------------ evaluate: which run, and a run that cannot load


def _export(run: Path, **files: str | bytes) -> Path:
    """A run folder with an export made by hand (building a real run is slow)."""
    export = run / "export"
    export.mkdir(parents=True)
    for name, content in files.items():
        f = export / name.replace("_", ".")
        if isinstance(content, bytes):
            f.write_bytes(content)
        else:
            f.write_text(content)
    return export


META = ('{"format": "shoprec-seqrec/1", "dataset": "shop", "training": {}, '
        '"inputs": {"max_len": 50, "n_user_features": 0}, '
        '"items": {"ids": [], "categories": [], "brands": [], "price_edges": []}}')


def test_evaluate_of_an_export_without_its_model_names_the_missing_file(tmp_path):
    export = _export(tmp_path / "runs" / "shop" / "20260101T000000Z",
                     metadata_json="{}", items_pt=b"")
    line = _one_line(_cli(tmp_path, "evaluate", str(export.parent)), 2)
    assert str(export / "model.ts") in line and "missing" in line
    assert "items.pt" not in line and "metadata.json" not in line
    # the same run by its id, under the dataset's runs
    assert _one_line(_cli(tmp_path, "evaluate", "20260101T000000Z"), 2) == line


def test_evaluate_of_a_wrong_format_or_unloadable_export_is_one_line(tmp_path):
    run = tmp_path / "runs" / "shop" / "r1"
    export = _export(run, metadata_json="{}", model_ts=b"", items_pt=b"")
    line = _one_line(_cli(tmp_path, "evaluate", "r1"), 2)
    assert str(export / "metadata.json") in line and "format None" in line
    (export / "metadata.json").write_text('{"format": "shoprec-seqrec/1", "items": {"ids": [')
    line = _one_line(_cli(tmp_path, "evaluate", "r1"), 2)
    assert str(export / "metadata.json") in line and "half-written" in line
    (export / "metadata.json").write_text('{"format": "shoprec-seqrec/1"}')
    line = _one_line(_cli(tmp_path, "evaluate", "r1"), 2)
    assert "missing or malformed dataset, training, inputs, items" in line
    (export / "metadata.json").write_text(META)
    (export / "model.ts").write_bytes(b"not a zip archive")
    line = _one_line(_cli(tmp_path, "evaluate", "r1"), 2)
    assert str(export / "model.ts") in line and "torch cannot load" in line


def test_evaluate_refuses_a_path_outside_the_home_and_a_run_id_that_escapes(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    _export(elsewhere / "r1", metadata_json=META)
    line = _one_line(_cli(home, "evaluate", str(elsewhere / "r1")), 2)
    assert "outside" in line and str(elsewhere / "r1") in line
    line = _one_line(_cli(home, "evaluate", str(home / "runs" / ".." / ".." / "elsewhere")), 2)
    assert "outside" in line
    for bad in ("..", "r1..x", ".hidden"):
        assert f"run name {bad!r} is not allowed" in _one_line(_cli(home, "evaluate", bad), 2)
    assert "no run 'r9' under" in _one_line(_cli(home, "evaluate", "r9"), 2)


# ------------------------------------------------- features get before any features apply


def test_features_get_before_apply_is_one_line_exit_2(tmp_path):
    line = _one_line(_cli(tmp_path, "features", "get", "u1"), 2)
    assert line == ("error: no feature service 'recommender_v2' in the registry of dataset "
                    "'shop': run `shoprec features apply` (or `features materialize`) first")


def test_online_watermarks_read_after_a_writer_was_killed_mid_transaction(tmp_path):
    """A materialization killed while SQLite was writing leaves a hot journal beside online.db;
    `features status` and the next materialize read the watermarks through it (SQLite rolls
    the journal back), instead of failing on a read-only connection."""
    import sqlite3

    from shoprec.features.watermark import SqliteWatermarks

    db = tmp_path / "online.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (v BLOB)")
        con.executemany("INSERT INTO t VALUES (?)", [(os.urandom(4096),)] * 2000)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, time
        con = sqlite3.connect({str(db)!r}, isolation_level=None)
        con.execute("PRAGMA cache_size = 1")  # spill the change into the file before commit
        con.execute("BEGIN")
        con.execute("UPDATE t SET v = zeroblob(4096)")
        print("writing", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait()
    assert (tmp_path / "online.db-journal").stat().st_size > 0  # hot: the kill left it
    assert SqliteWatermarks(db, "p").read(["user_daily"]) == {}
    assert not (tmp_path / "online.db-journal").exists() or \
        (tmp_path / "online.db-journal").stat().st_size == 0
    with sqlite3.connect(db) as con:  # rolled back: the killed write left nothing
        assert con.execute("SELECT count(*) FROM t WHERE v = zeroblob(4096)").fetchone() == (0,)
