"""The dbt project as Airflow tasks (astronomer-cosmos): ONE `dbt build` does the work, and every
model keeps a task of its own, then one for its tests.

Rendering reads dbt's own manifest, so the graph (refs, data tests, tests spanning two models) is
exactly dbt's. The manifest comes from `dbt parse` in a subprocess (dbt never enters the process
that parses DAG files), run once per version of the project and cached under
`SHOPREC_HOME/cache/dbt-manifest/`: a fresh checkout pays ~4 s on its first parse, later parses
only hash the project's files. Nothing is written into `dbt_project/`.

Execution is cosmos' `ExecutionMode.WATCHER`: the task `dbt_producer_watcher` runs one `dbt build`
(dbtRunner in the worker, on a throwaway copy of the project, so dbt's target/ and logs/ never
land in the repository) and reports each node's status as it finishes; `<model>.run` and
`<model>.test` are deferrable sensors of those statuses (they wait in the triggerer, checking
every WATCH_SECONDS), so the UI shows each model and its tests, a failure turns that task red
with dbt's message, and the snapshot after the group is published only when all passed. The
producer is the only writer of the warehouse (DuckDB allows one writing process per file). The
locations dbt reads (`Settings.tool_env()`: the warehouse and the validated zone of the run's
`dataset` param, resolved in the worker) reach dbt through the operators' `env`, filled in by
`prepare_dbt_task` just before each task runs. The group passes `--full-refresh` when the run's
`full_refresh` is on or a retracted/superseded batch asks for a rebuild.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from shoprec.atomic import atomic_path

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
_NOT_SOURCES = {"target", "logs", "dbt_packages"}
WATCH_SECONDS = 2  # how often a model's sensor looks at what the one `dbt build` reported
_DBT_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}  # also keeps .user.yml out of the repo


def prepare_dbt_task(context) -> None:
    """pre_execute hook of every dbt task, in the worker: point dbt at this run's warehouse.

    dbt reads its locations from the environment (profiles.yml, sources). The operator's `env` is
    filled here rather than at parse time: the home is the worker's (absolute) and the dataset
    the run's `dataset` param. DuckDB will not create the warehouse's folder. The contract stubs
    are written as `shoprec transform` writes them (a no-op when they are already there), so a
    table no delivery brought yet reads as empty here too.
    """
    from shoprec.config import get_settings
    from shoprec.transform.stubs import write_contract_stubs

    s = get_settings()
    dataset = (context.get("params") or {}).get("dataset") or s.dataset
    s.warehouse(dataset).parent.mkdir(parents=True, exist_ok=True)
    write_contract_stubs(s, dataset)
    task = context["task"]
    task.env = {**(task.env or {}), **s.tool_env(dataset)}


def _project_key() -> str:
    """Changes whenever a file of the dbt project, dbt-core or the adapter changes."""
    h = hashlib.sha256()
    for pkg in ("dbt-core", "dbt-duckdb"):
        h.update(f"{pkg}=={version(pkg)}\n".encode())
    for path in sorted(PROJECT_DIR.rglob("*")):
        rel = path.relative_to(PROJECT_DIR)
        if path.is_file() and not (_NOT_SOURCES & set(rel.parts)) and rel.name != ".user.yml":
            h.update(f"{rel.as_posix()}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def project_manifest() -> Path:
    """dbt's manifest.json of the current project, from the cache or a fresh `dbt parse`."""
    from shoprec.config import get_settings

    s = get_settings()
    cache_dir = s.dbt_manifest_cache()
    manifest = cache_dir / f"manifest-{_project_key()}.json"
    if manifest.exists():
        return manifest
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="dbt-parse-", dir=cache_dir) as tmp,
          atomic_path(manifest) as tmp_manifest):  # atomic: racing parsers
        cmd = [sys.executable, "-c", "from dbt.cli.main import cli; cli()", "parse", "--quiet",
               "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
               "--target-path", f"{tmp}/target", "--log-path", f"{tmp}/logs"]
        env = {**os.environ, **s.tool_env(), **_DBT_ENV}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"dbt parse failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        os.replace(Path(tmp) / "target" / "manifest.json", tmp_manifest)
    for old in cache_dir.glob("manifest-*.json"):
        if old != manifest:
            old.unlink(missing_ok=True)
    return manifest


def dbt_task_group(group_id: str = "dbt", **kwargs):
    """A cosmos DbtTaskGroup in watcher mode: the producer's one `dbt build`, and sensors
    `<model>.run` then `<model>.test` per model; a test that reads two models (relationships)
    is reported by both models' `.test`. Extra kwargs go to the task group (e.g.
    `default_args`). The DAG needs the params `dataset` and `full_refresh` and the macros in
    `shoprec.pipeline.tasks.MACROS`."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos import settings as cosmos_settings
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    cosmos_settings.enable_telemetry = False  # by default it phones home from every task and run

    group = DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(dbt_project_path=PROJECT_DIR,
                                     manifest_path=project_manifest()),
        profile_config=ProfileConfig(profile_name="shoprec", target_name="dev",
                                     profiles_yml_filepath=PROJECT_DIR / "profiles.yml"),
        execution_config=ExecutionConfig(execution_mode=ExecutionMode.WATCHER,
                                         invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST,
                                   test_behavior=TestBehavior.AFTER_EACH,
                                   # a test over two models (relationships) is reported by
                                   # both models' test sensors; cosmos 1.15 publishes no status
                                   # for a detached test's own sensor, which then always defers
                                   # and, resumed at once, races the executor's event for its
                                   # first try (Airflow fails it as "changed externally")
                                   should_detach_multiple_parents_tests=False,
                                   emit_datasets=False),  # the DAG's own assets mark the stages
        operator_args={
            "env": dict(_DBT_ENV),
            "pre_execute": prepare_dbt_task,
            # cosmos reads "True"/"False" strings; a retracted/superseded batch forces a rebuild
            "full_refresh": "{{ params.full_refresh or shoprec_rebuild_needed(params.dataset) }}",
            "install_deps": False,
            "poke_interval": WATCH_SECONDS,
        },
        **kwargs,
    )
    _sense_after_the_build(group)
    return group


def _sense_after_the_build(group) -> None:
    """The model sensors at the root of the group start once the one `dbt build` finished (in
    any state: a failed model's sensor reports its failure), so each finds its status at its
    first look instead of deferring: no trigger round-trips on a small machine, and
    `dag.test()`, which runs one task at a time in no set order, never runs a sensor before
    the build it waits for. What follows a root sensor keeps dbt's order and all_success."""
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    prefix = f"{group.group_id}."
    tasks = {t.task_id: t for t in group.dag.tasks if t.task_id.startswith(prefix)}
    producer = tasks[prefix + PRODUCER_WATCHER_TASK_ID]
    for task in tasks.values():
        if hasattr(task, "producer_task_id") and not (task.upstream_task_ids & set(tasks)):
            producer >> task
            task.trigger_rule = "all_done"
