"""The map of the house holds: every location under SHOPREC_HOME is named by a `Settings`
method, every Feast name by `feature_repo/names.py`; no other module spells either again."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from feature_repo import names
from shoprec.config import Settings

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("shoprec", "training", "dags", "feature_repo", "bench", "serving")
# Settings members that return a location; `<member> / "literal"` builds a location by hand
LOCATION_MEMBERS = {
    "root", "lake", "zone", "airflow_home", "airflow_logs", "validation_ledger", "warehouse",
    "analytics_snapshot",
    "warehouse_snapshots", "dbt_state", "dbt_target", "dbt_logs", "dbt_docs",
    "dbt_manifest", "dbt_manifest_cache", "feast_state", "feast_registry", "feast_online_db",
    "feast_yaml",
    "feast_locks", "feature_exports", "runs_dir", "model_registry", "serving_state", "cache_dir",
    "movielens_cache", "wheel_cache", "reports_dir", "data_docs_dir", "import_rejects",
    "training_report", "home", "data_docs_index", "log_file", "arrival_counter",
    "rebuild_marker", "contract_stubs", "validation_profile", "event_spool", "event_flush_lock",
    "demo_log", "privacy_key_file", "privacy_state", "forget_log",
    "internal_snapshot", "analysts_snapshots", "lake_sync_manifest", "data_docs_lock",
}
FEAST_NAMES = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)
               and not k.endswith("_KEY")} - {names.USER, names.ITEM}


def _python_files() -> list[Path]:
    files = []
    for d in CODE_DIRS:
        if (ROOT / d).is_dir():
            files += sorted((ROOT / d).rglob("*.py"))
    return [f for f in files if ".venv" not in f.parts]


def _member(node: ast.expr) -> str | None:
    """`settings.zone(...)` → 'zone'; `s.root` → 'root'."""
    if isinstance(node, ast.Call):
        node = node.func
    return node.attr if isinstance(node, ast.Attribute) else None


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _hand_built_locations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            member = _member(node.left)
            literal = isinstance(node.right, ast.Constant | ast.JoinedStr)
            if member in LOCATION_MEMBERS and (literal or member in {"root", "home"}):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and _member(node.func) == "joinpath"
              and _member(node.func.value) in LOCATION_MEMBERS):
            bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and node.value in (".shoprec", "SHOPREC_HOME/"):
            bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return bad


def test_no_module_builds_a_location_under_the_home_by_hand():
    bad = [b for f in _python_files() if f != ROOT / "shoprec" / "config.py"
           for b in _hand_built_locations(f)]
    assert bad == [], "use (or add) a Settings method instead:\n" + "\n".join(bad)


def test_the_check_catches_a_hand_built_path(tmp_path):
    f = tmp_path / "offender.py"
    f.write_text("def f(settings, ds):\n    return settings.root / 'warehouse' / f'{ds}.db'\n"
                 "def g(s):\n    return s.cache_dir / 'x'\n")
    f = f.rename(ROOT / "tests" / f"_tmp_offender_{tmp_path.name}.py")
    try:
        assert len(_hand_built_locations(f)) == 2
    finally:
        f.unlink()


def test_dbt_and_feast_config_read_locations_from_settings():
    """dbt's YAML/Jinja and Feast's definitions get locations from `Settings.tool_env()` (or the
    generated feature_store.yaml); none of them composes a path under the home itself."""
    texts = {p: p.read_text() for p in [*(ROOT / "dbt_project").rglob("*.yml"),
                                        *(ROOT / "dbt_project").rglob("*.sql")]
             if "target" not in p.relative_to(ROOT / "dbt_project").parts}
    used = set()
    for p, text in texts.items():
        assert "env_var('SHOPREC_HOME'" not in text, f"{p} builds a path from SHOPREC_HOME"
        used |= set(re.findall(r"env_var\('(SHOPREC_[A-Z_]+)'", text))
    assert used <= set(Settings().tool_env())
    assert not (ROOT / "feature_repo" / "feature_store.yaml").exists()  # generated, per dataset


def test_feast_names_are_spelled_only_in_feature_repo_names():
    bad = []
    for f in _python_files():
        if f == ROOT / "feature_repo" / "names.py":
            continue
        tree = ast.parse(f.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docs
                    and (node.value in FEAST_NAMES
                         or node.value.split(":")[0] in FEAST_NAMES - {node.value})):
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert bad == [], "import the name from feature_repo.names:\n" + "\n".join(bad)


@pytest.mark.parametrize("dataset", ["shop", "acme"])
def test_every_location_is_under_the_home_and_distinct(tmp_path, dataset):
    s = Settings(home=tmp_path, storage_uri=None)
    locs = s.locations(dataset)
    assert all(p.is_relative_to(tmp_path.resolve()) for p in locs.values())
    assert len(set(locs.values())) == len(locs)
    assert s.uri(s.zone("validated", dataset)).startswith("file:///")
    s3 = Settings(home=tmp_path, storage_uri="s3://bucket/prefix")
    assert s3.uri(s3.zone("validated", dataset)) == \
        f"s3://bucket/prefix/lake/{dataset}/validated"
