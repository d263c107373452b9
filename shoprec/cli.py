"""The `shoprec` command line: one subcommand per pipeline stage, shared with the DAGs and tests."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from feature_repo.names import SERVING_SERVICE, USER_KEY
from shoprec import quiet
from shoprec.cli_lake import app as lake_app
from shoprec.cli_models import app as models_app
from shoprec.cli_privacy import app as privacy_app
from shoprec.cli_profile import profile_cmd
from shoprec.config import get_settings

app = typer.Typer(help="Shoprec: real-time shop recommendations, end to end.", no_args_is_help=True)
data_app = typer.Typer(help="Produce or import data into the landing zone.", no_args_is_help=True)
import_app = typer.Typer(help="Import public or exported data into the contract.",
                         no_args_is_help=True)
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")
app.add_typer(lake_app, name="lake")
app.add_typer(models_app, name="models")
app.add_typer(privacy_app, name="privacy")
data_app.command("profile")(profile_cmd)
console = Console(stderr=True, soft_wrap=True)  # one-line summaries stay one line


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", envvar=quiet.VERBOSE_ENV,
                                 help="Show tracebacks, warnings and library logs."),
) -> None:
    quiet.set_verbose(verbose)


@data_app.command("simulate")
def simulate_cmd(
    scale: str = typer.Option(None, help="tiny (~50k events), small (~500k), large (~10M)."),
    seed: int = typer.Option(None, help="Random seed; the same seed gives the same bytes."),
    dataset: str = typer.Option(None, help="Dataset namespace in the lake (default: shop)."),
    days: int = typer.Option(None, help="Override the number of simulated days."),
    inject: list[str] = typer.Option(
        [], "--inject", help="Break a batch with FAULT (repeatable): "
        "null_keys, unknown_event_type, future_timestamps, negative_prices, duplicate_events, "
        "unknown_items, schema_renamed, schema_missing, schema_extra, wrong_dtype, empty_batch, "
        "corrupt_parquet."),
    inject_day: int = typer.Option(None, help="Day index that gets the faults (default: last)."),
) -> None:
    """Simulate a shop and write day-partitioned batches into the landing zone."""
    from shoprec.simulate import simulate

    s = get_settings()
    t0 = time.perf_counter()
    report = simulate(scale or s.scale, seed=s.seed if seed is None else seed,
                      dataset=dataset, days=days, settings=s, progress=True,
                      inject=inject, inject_day=inject_day)
    console.print(f"[green]simulated[/] {report.summary()} in {time.perf_counter() - t0:.1f} s")
    _announce(report.dataset, report.batches, "shoprec data simulate")


def _announce(dataset: str, batches: list[str], source: str) -> None:
    """Tell Airflow (when SHOPREC_AIRFLOW__API_URL is set) that these batches landed."""
    s = get_settings()
    if s.airflow.api_url and batches:
        from shoprec.pipeline.announce import announce_landing

        console.print(announce_landing(dataset, batches, source, s), markup=False,
                      highlight=False)


def _announce_import(report) -> None:
    if not report.skipped:
        _announce(report.dataset, [report.batch_id], f"shoprec data import {report.path}")


@import_app.command("movielens")
def import_movielens_cmd(
    dataset: str = typer.Option("ml-100k", help="Dataset namespace in the lake."),
    source: Path = typer.Option(None, help="A local ml-100k directory (u.data, u.item, u.user)."),
) -> None:
    """MovieLens-100K: every rating becomes an event; genres become the category."""
    from shoprec.importers.movielens import import_movielens

    report = import_movielens(dataset=dataset, source=source, settings=get_settings())
    console.print(f"[green]imported[/] {report.summary()}")
    _announce_import(report)


@import_app.command("file")
def import_file_cmd(
    path: Path = typer.Argument(..., help="CSV or Parquet file."),
    kind: str = typer.Option("events", help="events, items or users."),
    dataset: str = typer.Option(None, help="Dataset namespace in the lake."),
    mapping: list[str] = typer.Option(
        [], "--map", help="contract_column=source_column, repeatable."),
    event_type: str = typer.Option(None, help="Constant event type for every row (events)."),
    event_map: list[str] = typer.Option(
        [], "--event-map", help="SOURCE=TYPE: the shop's event name → view, click, "
        "add_to_cart or purchase, repeatable (e.g. pageview=view)."),
    batch_id: str = typer.Option(None, help="Batch name (default: derived from the file)."),
    time_unit: str = typer.Option(None, help="Unit of numeric epoch timestamps: s, ms, us or "
                                  "ns (default: detected from their magnitude)."),
    delimiter: str = typer.Option(None, help="CSV delimiter, e.g. ';' or 'tab' (default: "
                                  "detected from the header among , ; tab |)."),
    encoding: str = typer.Option(None, help="CSV text encoding, e.g. latin-1 (default: utf-8, "
                                 "else cp1252/latin-1, said in the report)."),
) -> None:
    """A CSV/Parquet file with a column mapping into the contract."""
    from shoprec.importers.tabular import import_file, parse_event_map, parse_mapping

    report = import_file(path, kind=kind, mapping=parse_mapping(mapping), event_type=event_type,
                         dataset=dataset, batch_id=batch_id, settings=get_settings(),
                         time_unit=time_unit, delimiter=delimiter, encoding=encoding,
                         event_map=parse_event_map(event_map))
    console.print(f"[green]imported[/] {report.summary()}")
    _announce_import(report)


@import_app.command("dir")
def import_dir_cmd(
    folder: Path = typer.Argument(..., help="A delivery folder: events, items and/or users "
                                  "files (.csv or .parquet)."),
    dataset: str = typer.Option(None, help="Dataset namespace in the lake."),
    mapping: list[str] = typer.Option(
        [], "--map", help="kind.contract_column=source_column, repeatable "
        "(e.g. items.price=unit_cost)."),
    kind_of: list[str] = typer.Option(
        [], "--kind", help="FILE=kind for a file not named events/items/users "
        "(e.g. orders.csv=events), repeatable."),
    event_type: str = typer.Option(None, help="Constant event type for every event row."),
    event_map: list[str] = typer.Option(
        [], "--event-map", help="SOURCE=TYPE: the shop's event name → view, click, "
        "add_to_cart or purchase, repeatable."),
    batch_id: str = typer.Option(None, help="Batch name (default: derived from the files)."),
    time_unit: str = typer.Option(None, help="Unit of numeric epoch timestamps: s, ms, us or "
                                  "ns (default: detected from their magnitude)."),
    delimiter: str = typer.Option(None, help="CSV delimiter (default: detected)."),
    encoding: str = typer.Option(None, help="CSV text encoding (default: utf-8, else "
                                 "cp1252/latin-1)."),
) -> None:
    """Every table of one delivery folder as ONE landing batch (all files checked first)."""
    from shoprec.importers.tabular import (
        import_dir,
        parse_event_map,
        parse_kinds,
        parse_mappings,
    )

    report = import_dir(folder, mappings=parse_mappings(mapping), kinds=parse_kinds(kind_of),
                        event_type=event_type, dataset=dataset, batch_id=batch_id,
                        settings=get_settings(), time_unit=time_unit, delimiter=delimiter,
                        encoding=encoding, event_map=parse_event_map(event_map))
    console.print(f"[green]imported[/] {report.summary()}")
    _announce_import(report)


@app.command("validate")
def validate_cmd(
    batch: list[str] = typer.Option([], "--batch", help="Batch id (repeatable; default: all "
                                    "landing batches)."),
    dataset: str = typer.Option(None, help="Dataset namespace in the lake (default: shop)."),
    force: bool = typer.Option(False, help="Judge again batches whose bytes were judged before."),
) -> None:
    """Validate landing batches with Great Expectations; bad ones go whole to quarantine/.

    Exit code 0: all passed; 1: at least one batch quarantined; 3: the validator itself broke.
    """
    from shoprec.validation import ValidatorError, validate

    s = get_settings()
    t0 = time.perf_counter()
    colour = {"validated": "green", "quarantined": "red", "unchanged": "dim",
              "skipped": "yellow", "waiting": "yellow"}

    def show(r) -> None:
        rows = sum(r.rows.values())
        line = f"[{colour[r.status]}]{r.status:>11}[/] {r.batch_id}"
        line += (f"  {r.note}" if r.status in {"unchanged", "skipped", "waiting"}
                 else f"  {rows:,} rows {r.seconds:.2f} s")
        console.print(line)
        if r.status == "validated" and r.note:
            console.print(f"             [yellow]![/] {r.note}")
        for f in r.failures:
            console.print(f"             [red]✗[/] {f.line()}")
        if r.status == "quarantined":
            console.print(f"             report: {r.path / '_validation'}")

    try:
        results = validate(batch or None, dataset=dataset, settings=s, force=force,
                           on_batch=show)
    except ValidatorError as e:
        console.print(f"[red]validator broken (no batch was moved for it):[/] {e}")
        raise typer.Exit(3) from None
    n = {k: sum(r.status == k for r in results) for k in colour}
    bad = n["quarantined"]
    console.print(f"[{'red' if bad else 'green'}]validate[/] {n['validated']} validated, "
                  f"{bad} quarantined, {n['unchanged']} unchanged"
                  + "".join(f", {n[k]} {k}" for k in ("waiting", "skipped") if n[k]) + " in "
                  f"{time.perf_counter() - t0:.1f} s → {s.lake(dataset)}"
                  + (f"; Data Docs: {s.data_docs_index()}" if bad else ""))
    if bad:
        raise typer.Exit(1)


@app.command("transform")
def transform_cmd(
    dataset: str = typer.Option(None, help="Dataset namespace (default: shop)."),
    full_refresh: bool = typer.Option(False, help="Rebuild incremental models from scratch."),
    select: str = typer.Option(None, help="dbt selection, e.g. 'marts' or '+feat_user_daily'."),
    docs: bool = typer.Option(False, help="Also run `dbt docs generate`."),
) -> None:
    """dbt build (staging → marts → features, with tests) and publish the analysts' snapshot."""
    from shoprec.transform import transform
    from shoprec.transform.runner import generate_docs

    s = get_settings()
    report = transform(settings=s, dataset=dataset, full_refresh=full_refresh, select=select)
    console.print(f"[green]transform[/] {report.summary()}")  # a DbtError: one line in main()
    if docs:
        console.print(f"[green]docs[/] {generate_docs(settings=s, dataset=dataset)}")


@app.command("backfill")
def backfill_cmd(
    start: str = typer.Argument(..., help="First day (UTC), YYYY-MM-DD."),
    end: str = typer.Argument(..., help="Last day (UTC), inclusive."),
    dataset: str = typer.Option(None, help="Dataset namespace (default: shop)."),
    full_refresh: bool = typer.Option(False, help="Rebuild incremental models from scratch."),
) -> None:
    """Re-run the chain for a date range (what the shoprec_backfill DAG does): validate the
    range's landing batches, dbt, the snapshot, Feast re-loaded from START on. Exit 1 when a
    batch of the range was quarantined."""
    from shoprec.pipeline.backfill import run

    s = get_settings()
    out = _online(s, run, start, end, dataset, full_refresh, s,
                  say=lambda m: console.print(m, markup=False, highlight=False))
    if out["validate"]["quarantined"]:
        for b, why in out["validate"]["quarantined"].items():
            console.print(f"quarantined {b}: {why}", style="red", markup=False)
        raise typer.Exit(1)


features_app = typer.Typer(help="Feast feature store: apply, materialize, status, look up, "
                            "push.", no_args_is_help=True)
app.add_typer(features_app, name="features")


def _online(settings, fn, /, *args, **kwargs):
    """Call fn; an unreachable online store ends in one red line and exit code 1."""
    from shoprec.features.online import OnlineStoreUnavailable, reachable

    try:
        with reachable(settings):
            return fn(*args, **kwargs)
    except OnlineStoreUnavailable as e:
        console.print(f"error: {e}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None


@features_app.command("apply")
def features_apply_cmd(dataset: str = typer.Option(None, help="Dataset (default: shop).")) -> None:
    """Register entities, sources, feature views and services in the Feast registry."""
    from shoprec.features.materialize import apply

    s = get_settings()
    store = apply(settings=s, dataset=dataset)
    views = [v.name for v in [*store.list_feature_views(), *store.list_stream_feature_views()]]
    services = [f.name for f in store.list_feature_services()]
    console.print(f"[green]applied[/] project {store.project}: views {views}, "
                  f"services {services} ({s.feast.online_store} online store)")


@features_app.command("materialize")
def features_materialize_cmd(
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Export dbt's feature tables and load what is new into the online store."""
    from shoprec.features.materialize import materialize

    s = get_settings()
    report = _online(s, materialize, settings=s, dataset=dataset)
    console.print(f"[green]materialize[/] {report.summary()}")


@features_app.command("status")
def features_status_cmd(
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Per view: the registry's, the online store's and the offline export's state; "behind"
    means the next materialize loads that view."""
    from shoprec.features.status import status

    s = get_settings()
    typer.echo(_online(s, status, settings=s, dataset=dataset).table())


@features_app.command("get")
def features_get_cmd(
    user_id: list[str] = typer.Argument(..., help="User ids."),
    service: str = typer.Option(SERVING_SERVICE, help="Feature service."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Online lookup through a feature service (prints JSON)."""
    import json

    from feast.errors import FeatureServiceNotFoundException

    from shoprec.features.store import get_store
    from shoprec.names import UsageError

    s = get_settings()
    ds = dataset or s.dataset
    store = get_store(s, ds)
    try:
        features = store.get_feature_service(service)
    except FeatureServiceNotFoundException:
        known = [f.name for f in store.list_feature_services()]
        raise UsageError(
            f"no feature service {service!r} in the registry of dataset {ds!r}: "
            + (f"it has {', '.join(known)}" if known else
               "run `shoprec features apply` (or `features materialize`) first")) from None
    d = _online(s, lambda: store.get_online_features(
        features=features, entity_rows=[{USER_KEY: u} for u in user_id]).to_dict())
    typer.echo(json.dumps(d, default=str, indent=1))


@features_app.command("push")
def features_push_cmd(
    user_id: str, item_id: str,
    event_type: str = typer.Option("view", help="view, click, add_to_cart or purchase."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Push one live event; prints the user's new online sequence."""
    from shoprec.features.live import LiveSequences
    from shoprec.features.store import get_store

    s = get_settings()
    live = LiveSequences(get_store(s, dataset), s, dataset)
    seq = _online(s, live.push, user_id, item_id, event_type)
    typer.echo(" → ".join(f"{i}:{t}" for _, i, t in seq))


def _choice(option: str, value: str | None, field: str) -> str | None:
    """A --protocol / --exclude value checked against TrainingSettings: one line if unknown."""
    from typing import get_args

    from shoprec.config import TrainingSettings
    from shoprec.names import UsageError

    allowed = get_args(TrainingSettings.model_fields[field].annotation)
    if value is not None and value not in allowed:
        raise UsageError(f"{option} {value!r}: expected one of {' | '.join(allowed)}")
    return value


def _training_overrides(s, protocol, exclude, epochs, device, user_features, max_minutes,
                        patience):
    t = s.training
    protocol = _choice("--protocol", protocol, "protocol")
    exclude = _choice("--exclude", exclude, "exclude")
    updates = {k: v for k, v in {"protocol": protocol, "exclude": exclude, "max_epochs": epochs,
                                 "device": device, "user_features": user_features,
                                 "max_minutes": max_minutes, "patience": patience}.items()
               if v is not None}
    return s.model_copy(update={"training": t.model_copy(update=updates)})


@app.command("train")
def train_cmd(
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
    seeds: str = typer.Option(None, help="Comma-separated seeds; metrics are averaged over them."),
    protocol: str = typer.Option(None, help="time (global time split), loo (leave-one-out: "
                                 "each user's last interaction is the test) or session (each "
                                 "user's last session is the test, the one before the "
                                 "validation)."),
    exclude: str = typer.Option(None, help="none | purchased | interacted: history items that "
                                           "are not ranked."),
    epochs: int = typer.Option(None, help="Maximum epochs (early stopping usually ends first)."),
    device: str = typer.Option(None, help="auto | cpu | cuda."),
    user_features: bool = typer.Option(None, "--user-features/--no-user-features",
                                       help="Point-in-time user features from Feast."),
    max_minutes: float = typer.Option(None, help="Wall-clock budget per seed."),
    patience: int = typer.Option(None, help="Epochs without a better validation NDCG@10."),
) -> None:
    """Train the sequential recommender and the baselines; evaluate on the held-out data."""
    from training.runner import train_seeds

    s = _training_overrides(get_settings(), protocol, exclude, epochs, device, user_features,
                            max_minutes, patience)
    seed_list = [int(x) for x in seeds.split(",")] if seeds else [s.seed]
    report = train_seeds(s, dataset, seed_list)
    typer.echo(f"test metrics, mean of seeds {seed_list} ({report.protocol}, "
               f"exclude={report.exclude}):")
    typer.echo(report.table())
    for r in report.results:
        console.print(f"[green]trained[/] {r.summary()}")


@app.command("evaluate")
def evaluate_cmd(
    run: str = typer.Argument(None, help="A run id (a folder of the dataset's runs) or a run "
                                         "folder's path inside SHOPREC_HOME (default: the "
                                         "dataset's latest run)."),
    dataset: str = typer.Option(None, help="Dataset (default: the run's)."),
    exclude: str = typer.Option(None, help="Override the run's none | purchased | interacted."),
) -> None:
    """Evaluate an exported model (as serving loads it) on the dataset's current held-out data."""
    import os

    from shoprec.names import InvalidName, UsageError, check_name, inside
    from training.data import TrainingDataError
    from training.evaluate import evaluate_export
    from training.runner import latest_run

    exclude = _choice("--exclude", exclude, "exclude")
    s = get_settings()
    if run is None:
        folder = latest_run(s, dataset or s.dataset)
    elif any(sep in run for sep in ("/", os.sep, os.altsep) if sep):  # a path
        try:
            folder = inside(Path(run).expanduser(), s.root)
        except InvalidName:  # its own message is made for names: say what is wrong here
            raise UsageError(f"run folder {run} is outside SHOPREC_HOME ({s.root}): give a run "
                             f"id or a run folder's path under it") from None
    else:  # a run id, under the dataset's runs
        folder = s.runs_dir(dataset or s.dataset) / check_name(run, "run")
        if not folder.is_dir():
            raise TrainingDataError(f"no run {run!r} under {folder.parent}: see the folders "
                                    f"there, or give a run folder's path")
    metrics, meta = evaluate_export(s, folder / "export", dataset, exclude=exclude)
    typer.echo(f"{folder} ({meta['training']['protocol']}, "
               f"exclude={meta['training']['exclude']}):")
    for name, m in metrics.items():
        typer.echo(f"  {name}: " + "  ".join(f"{k} {v:.4f}" for k, v in m.items()
                                              if k != "users"))


@app.command("demo")
def demo_cmd(
    scale: str = typer.Option(None, help="Simulator scale (default: SHOPREC_SCALE or small)."),
) -> None:
    """Run every stage that exists today, end to end, on the embedded defaults."""
    from shoprec.demo import run_demo

    run_demo(scale=scale, settings=get_settings())


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Serve recommendations over HTTP (FastAPI on uvicorn) from the production model and the
    online store of the current SHOPREC_HOME: the demo page at /, the API docs at /docs."""
    import uvicorn

    from serving.app import create_app
    from shoprec.names import check_name
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    s = get_settings()
    if dataset:
        s = s.model_copy(update={"dataset": check_name(dataset, "dataset")})
    ds = s.dataset
    if Registry(store_from_settings(s), ds).alias("production") is None:
        console.print(f"error: no production model of dataset {ds!r} in {s.model_registry()}: "
                      "run `make demo`, or `shoprec models promote VERSION`", style="red",
                      markup=False, highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]serving[/] {ds} on http://{host}:{port}/ (docs at /docs, "
                  f"metrics at /metrics); Ctrl-C stops")
    uvicorn.run(create_app(s), host=host, port=port, log_level="warning", access_log=False)


@app.command("up")
def up_cmd(
    airflow_port: int = typer.Option(8080, help="Port of Airflow's UI / API server."),
    serve_port: int = typer.Option(8000, help="Port of the serving API and demo page."),
) -> None:
    """Airflow (api-server, scheduler, dag-processor, triggerer) and serving on this
    SHOPREC_HOME, with their URLs; Ctrl-C stops all of them."""
    from shoprec.up import up

    up(get_settings(), airflow_port, serve_port,
       say=lambda line: console.print(line, markup=False, highlight=False))


@app.command("info")
def info_cmd(dataset: str = typer.Option(None, help="Dataset (default: shop).")) -> None:
    """Show the effective settings and where every piece of state lives."""
    s = get_settings()
    for k, v in s.model_dump().items():
        typer.echo(f"{k} = {v}")
    for name, path in s.locations(dataset).items():
        typer.echo(f"{name} = {path}")


@app.command("env")
def env_cmd(dataset: str = typer.Option(None, help="Dataset (default: shop).")) -> None:
    """Print `export` lines for the bare `dbt` and `feast` CLIs: eval "$(shoprec env)"."""
    import shlex

    from shoprec.features.store import write_yaml

    s = get_settings()
    write_yaml(s, dataset or s.dataset)  # what `feast -c feature_repo ...` reads
    for k, v in s.tool_env(dataset).items():
        typer.echo(f"export {k}={shlex.quote(v)}")


def _log_file() -> Path | None:
    """Where third-party warnings and logs go when the console hides them."""
    try:
        return get_settings().log_file()
    except Exception:  # a setting that does not parse: main() reports it in one line
        return None


def main(hard_exit: bool = False) -> None:
    """Console entry point: expected failures end in one clear red line and an exit code (2: bad
    input, 1: a stage or service failed, 3: the validator broke), no traceback unless -v."""
    from pydantic import ValidationError

    from shoprec.contract import ContractError
    from shoprec.lifecycle import LifecycleError
    from shoprec.names import InvalidName, UsageError
    from shoprec.registry.manifest import RegistryError
    from shoprec.storage import StorageError
    from training.data import TrainingDataError

    quiet.setup(log_file=_log_file())
    try:
        app()
        code = 0
    except SystemExit as e:  # how click ends every command, and SIGTERM
        code = quiet.exit_code(e)
    except (ContractError, TrainingDataError, InvalidName, LifecycleError, UsageError,
            FileNotFoundError, RegistryError) as e:
        code = quiet.fail(console, 2, quiet.describe(e))
    except StorageError as e:  # the object store is unreachable or refuses
        code = quiet.fail(console, 1, str(e))
    except ValidationError as e:  # a SHOPREC_* setting that does not parse
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        code = quiet.fail(console, 2, f"setting {where}: {first['msg']}")
    except Exception as e:
        known = quiet.runtime_failure(e)
        code = quiet.crash(e) if known is None else quiet.fail(console, *known)
    if hard_exit:  # the `shoprec` process itself: skip the noisy interpreter teardown
        quiet.finish(code)
    raise SystemExit(code)  # called in-process (tests, other tools): a normal exit


def run() -> None:
    """The `shoprec` console script."""
    main(hard_exit=True)


if __name__ == "__main__":
    run()
