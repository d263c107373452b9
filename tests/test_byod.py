"""Bring your own data: the README's worked example runs as written, on files shaped like a
shop's export (not like the contract), through every stage to metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def readme_block(name: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(rf"<!-- example:{name} -->\n```bash\n(.*?)```", readme, re.S).group(1)


@pytest.fixture(scope="module")
def grocer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The example's commands, in one shell, exactly as the README shows them."""
    home = tmp_path_factory.mktemp("byod") / "home"
    env = {**os.environ, "SHOPREC_HOME": str(home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SHOPREC_DATASET", None)
    script = "set -euo pipefail\n" + readme_block("byod")
    res = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    return home, " ".join(out.split())


def test_imports_say_what_they_guessed(grocer: tuple[Path, str]) -> None:
    _, out = grocer
    assert "delimiter ';' (detected)" in out and "read as cp1252" in out
    assert "epoch unit of event_timestamp: ms (detected)" in out
    assert "dropped columns not in the contract: ['Lieferant']" in out
    assert "dropped columns not in the contract: ['newsletter']" in out


def test_three_separate_files_are_validated_without_moves(grocer: tuple[Path, str]) -> None:
    home, out = grocer
    validated = sorted(p.name for p in (home / "lake/grocer/validated").iterdir()
                       if not p.name.startswith("."))
    assert len(validated) == 3, out
    held = {n: sorted(f.stem for f in (home / "lake/grocer/validated" / n).glob("*.parquet"))
            for n in validated}
    assert sorted(held.values()) == [["events"], ["items"], ["users"]]
    assert not (home / "lake/grocer/quarantine").exists() or not any(
        (home / "lake/grocer/quarantine").iterdir())


def test_marts_know_sessions_and_unknown_revenue(grocer: tuple[Path, str]) -> None:
    home, _ = grocer
    con = duckdb.connect(str(home / "warehouse/grocer.duckdb"), read_only=True)
    try:
        orders, priced, derived = con.execute(
            "select count(*), count(revenue), count(*) filter (where session_id like '%~s%') "
            "from marts.fct_orders").fetchone()
        lines = sum(1 for _ in (ROOT / "examples/shop-export/orders.csv").open("rb")) - 1
        assert orders == lines and priced == 0 and derived == orders
        n_sessions, multi = con.execute(
            "select count(*), count(*) filter (where n_items > 1) "
            "from intermediate.int_sessions_aggregated").fetchone()
        assert 0 < n_sessions < orders and multi > 0  # baskets: several lines per session
        assert con.execute("select count(*) from marts.dim_users").fetchone()[0] == 240
    finally:
        con.close()


def test_session_protocol_gives_metrics_for_model_and_baselines(grocer: tuple[Path, str]
                                                                ) -> None:
    _, out = grocer
    m = re.search(r"test metrics, mean of seeds \[\d+\] \(session", out)
    assert m, out[-3000:]
    for name in ("model", "popularity", "itemknn"):
        assert re.search(rf"{name}\S* .*?ndcg@10", out, re.I), (name, out[-3000:])
