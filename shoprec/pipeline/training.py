"""Task bodies of the retraining DAG (`dags/shoprec_training.py`): train → gate → register →
promote. Plain functions: the DAG, the CLI, the demo and the tests call the same ones.

Idempotent per Airflow run: the run folders and the registry's run id derive from the Airflow
run id, so a re-run of the same run reuses its trained runs, its recorded gate verdict and its
registered version (the registry's register is idempotent per run id), and registers nothing
twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from shoprec.config import Settings, get_settings


class NotEnoughNewEvents(RuntimeError):
    """Fewer new events than `gates.min_new_events` since the last trained version: the DAG
    skips the run (AirflowSkipException, so everything downstream is skipped too)."""


def run_key(airflow_run_id: str) -> str:
    """The registry run id of an Airflow run: its id with every character outside the names
    pattern replaced, plus 8 hex of the original (two ids that clean up alike stay apart)."""
    from shoprec.names import check_name

    h = hashlib.sha256(airflow_run_id.encode()).hexdigest()[:8]
    slug = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", airflow_run_id))
    slug = slug.strip("-._")[:100].rstrip("-._")
    return check_name(f"{slug}-{h}" if slug else f"airflow-{h}", "run")


def _store(settings: Settings):
    from shoprec.storage import store_from_settings

    return store_from_settings(settings)


@dataclass(frozen=True)
class RunRef:
    """A training run as the gate and the registry see it."""

    run_dir: Path  # the run folder (the export folder itself when it has none)
    export: Path
    dataset: str
    run_id: str  # the registry's run id


def resolve_run(run_dir: str | Path, dataset: str | None = None,
                run_id: str | None = None) -> RunRef:
    """The export of a run folder (or an export folder), its dataset (`dataset`, else the one
    its metadata names) and its registry run id (`run_id`, else the run folder's name: an export
    folder given directly is named after the run folder holding it). One line when the folder
    holds no readable export."""
    from shoprec.names import check_name
    from shoprec.registry import RegistryError
    from shoprec.registry.gates import export_folder

    export = export_folder(Path(run_dir))
    folder = export.parent if export.name == "export" else export
    meta_file = export / "metadata.json"
    if not meta_file.is_file():
        raise RegistryError(f"{folder}: neither a run folder with an export/ nor an export (no "
                            f"metadata.json)")
    if not dataset:
        try:
            meta = json.loads(meta_file.read_bytes())
        except ValueError:
            raise RegistryError(f"{meta_file}: not valid JSON (half-written or damaged "
                                f"export)") from None
        dataset = meta.get("dataset") if isinstance(meta, dict) else None
        if not isinstance(dataset, str):
            raise RegistryError(f"{meta_file}: names no dataset (not a shoprec export?)")
    return RunRef(folder, export, check_name(dataset, "dataset"),
                  check_name(run_id or folder.name, "run"))


# ----------------------------------------------------------------------- when to train
def _window_end(window: object) -> dt.datetime | None:
    """The latest timestamp a data window mentions (time split: the test period's end; loo and
    session: the last event)."""
    found: list[dt.datetime] = []

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for w in v.values():
                walk(w)
        elif isinstance(v, list | tuple):
            for w in v:
                walk(w)
        elif isinstance(v, str):
            try:
                t = dt.datetime.fromisoformat(v)
            except ValueError:
                return
            found.append(t if t.tzinfo else t.replace(tzinfo=dt.UTC))

    walk(window)
    return max(found) if found else None


def last_trained(settings: Settings, dataset: str, store=None) -> tuple[str | None,
                                                                       dt.datetime | None]:
    """(version, end of its data window) of the newer of the production and candidate
    versions; (None, None) before the first registration."""
    from shoprec.registry import ALIASES, Registry

    reg = Registry(store if store is not None else _store(settings), dataset)
    best: tuple[str | None, dt.datetime | None] = (None, None)
    for alias in ALIASES:
        rec = reg.alias(alias)
        if not rec:
            continue
        end = _window_end(reg.manifest(rec["version"]).get("data_window"))
        if end is not None and (best[1] is None or end > best[1]):
            best = (rec["version"], end)
    return best


def count_events_after(settings: Settings, dataset: str, since: dt.datetime) -> int:
    """Events of the internal snapshot (marts.fct_events) later than `since`."""
    import duckdb

    from training.data import warehouse_snapshot

    with duckdb.connect(str(warehouse_snapshot(settings, dataset)), read_only=True) as con:
        return int(con.execute("select count(*) from marts.fct_events where event_timestamp > ?",
                               [since]).fetchone()[0])


def new_events(settings: Settings, dataset: str, store=None) -> dict:
    """How many events arrived after the last trained version's data window."""
    version, end = last_trained(settings, dataset, store)
    if end is None:
        return {"version": None, "since": None, "new_events": None}
    return {"version": version, "since": end.isoformat(),
            "new_events": count_events_after(settings, dataset, end)}


# ------------------------------------------------------------------------------ train
def _run_dirs(settings: Settings, dataset: str, seeds: list[int], key: str | None,
              started: dt.datetime) -> list[Path]:
    """One run folder per seed, named like `train`'s (UTC time first: `latest_run` sorts by
    name) and, inside Airflow, derived from the run: a re-run finds the same folders."""
    stamp = f"{started.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    suffix = f"-af{hashlib.sha256(key.encode()).hexdigest()[:8]}" if key else ""
    protocol = settings.training.protocol
    names = [f"{stamp}-{protocol}-seed{seed}{suffix}" for seed in seeds]
    return [settings.runs_dir(dataset) / name for name in names]


def _done(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file() and (run_dir / "export" / "metadata.json").is_file()


def _valid_score(run_dir: Path, metric: str) -> float:
    """The promoted recommender's validation score: how seeds are compared (never the test)."""
    metrics = json.loads((run_dir / "metrics.json").read_bytes())["metrics"]
    m = metrics.get("blend/valid") or metrics.get("model/valid") or {}
    v = m.get(metric)
    return float(v) if isinstance(v, int | float) and v == v else float("-inf")


HYPERPARAMETERS = ("dim", "layers", "heads", "dropout", "lr", "weight_decay", "batch_size")


def train_task(dataset: str | None = None, epochs: int | None = None,
               seeds: list[int] | None = None, max_minutes: float | None = None,
               airflow_run_id: str | None = None, started: dt.datetime | None = None,
               settings: Settings | None = None, force: bool = False,
               hyper: dict | None = None) -> dict:
    """Train one run per seed (data loaded once) and pick the seed whose promoted recommender
    validates best. Raises NotEnoughNewEvents when fewer than `gates.min_new_events` events
    arrived since the last trained version (unless `force`). Inside Airflow, a re-run of the
    same run reuses the runs it trained."""
    from training.train import train

    s = settings or get_settings()
    ds = dataset or s.dataset
    unknown = sorted(set(hyper or {}) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; chosen among {HYPERPARAMETERS}")
    updates = {k: v for k, v in {"max_epochs": epochs, "max_minutes": max_minutes,
                                 **(hyper or {})}.items() if v is not None}
    if updates:  # validated as the settings validate them (types, ranges)
        from shoprec.config import TrainingSettings

        training = TrainingSettings.model_validate({**s.training.model_dump(), **updates})
        s = s.model_copy(update={"training": training})
    seeds = list(seeds) if seeds else [s.seed]
    key = run_key(airflow_run_id) if airflow_run_id else None
    dirs = _run_dirs(s, ds, seeds, key, started or dt.datetime.now(dt.UTC))
    fresh = {"version": None, "since": None, "new_events": None}
    reused = bool(key) and all(_done(d) for d in dirs)
    if not reused:
        fresh = new_events(s, ds)
        n, need = fresh["new_events"], s.gates.min_new_events
        if not force and n is not None and n < need:
            raise NotEnoughNewEvents(
                f"{ds}: {n:,} new event(s) since {fresh['since']} (the data window of "
                f"{fresh['version']}), fewer than gates.min_new_events = {need:,}: not training")
        from training.data import load_interactions

        x = load_interactions(s, ds)
        for seed, d in zip(seeds, dirs, strict=True):
            if not (key and _done(d)):
                train(s, ds, seed=seed, progress=False, run_dir=d, x=x)
    metric = s.gates.metric_for(s.training.protocol)
    best = max(dirs, key=lambda d: _valid_score(d, metric))
    return {"dataset": ds, "run_dir": str(best), "runs": [str(d) for d in dirs],
            "run_id": key or best.name, "reused": reused, **fresh}


# ------------------------------------------------------------------------------ gate
def gate_task(run_dir: str | Path, dataset: str | None = None, run_id: str | None = None,
              settings: Settings | None = None) -> dict:
    """Run every gate on a run and write gate.json / gate.html into its export. When this run
    id is registered already (a re-run), its recorded verdict is the verdict."""
    from shoprec.registry import Registry
    from shoprec.registry.gates import run_gates

    s = settings or get_settings()
    run = resolve_run(run_dir, dataset, run_id)
    store = _store(s)
    rid = run.run_id
    reg = Registry(store, run.dataset)
    version = reg.run_version(rid)
    if version:
        report = reg.manifest(version).get("gate_report")
        if isinstance(report, dict) and "passed" in report:
            return {"passed": bool(report["passed"]), "reasons": report.get("reasons", []),
                    "version": version, "reused": True,
                    "summary": f"{rid} is registered as {version}: its recorded verdict "
                               f"({'passed' if report['passed'] else 'refused'}) stands"}
    report = run_gates(s, run.run_dir, run.dataset, store=store)
    return {"passed": report.passed, "reasons": report.reasons, "version": None,
            "reused": False, "summary": report.summary(), "production": report.production,
            "gate_json": str(run.export / "gate.json")}


# ---------------------------------------------------------------- register / promote
def register_task(run_dir: str | Path, dataset: str | None = None, run_id: str | None = None,
                  settings: Settings | None = None) -> dict:
    """Register the run's export (with its gate.json) as a version; the same run id again
    returns the version registered before."""
    from shoprec.registry import register
    from shoprec.registry.gates import read_report

    s = settings or get_settings()
    run = resolve_run(run_dir, dataset, run_id)
    report = read_report(run.export)
    version = register(_store(s), run.export, run.dataset, run.run_id, gate_report=report)
    return {"version": version, "dataset": run.dataset, "run_id": run.run_id,
            "passed": bool(report and report.get("passed")),
            "reasons": list((report or {}).get("reasons") or [])}


def promote_task(version: str, dataset: str, production: bool, settings: Settings | None = None,
                 by: str | None = None, why: str = "") -> dict:
    """Point `candidate` at the version, and `production` too when `production` (the gate
    passed). An alias that was moved onto this version before is not moved again: a re-run of
    an old run never undoes a later promotion or rollback."""
    from shoprec.registry import Registry

    s = settings or get_settings()
    reg = Registry(_store(s), dataset)
    moved = {}
    for alias in ("candidate", "production") if production else ("candidate",):
        if any(r.get("to") == version for r in reg.history(alias)):
            moved[alias] = f"{alias} was moved to {version} before: left as it is"
            continue
        move = reg.promote(version, alias, by, why)
        moved[alias] = move.summary() if move else f"already {version}"
    return {"version": version, "dataset": dataset, "moved": moved,
            "production": reg.aliases().get("production")}


def gate_register_promote(settings: Settings, run_dir: str | Path, *, dataset: str | None = None,
                          run_id: str | None = None, by: str | None = None) -> dict:
    """Gate a training run, register it (gate report included) and promote it: `candidate`
    always, `production` only when every gate passed. A refused run leaves production as it is.
    The one call for the demo and the CLI; the DAG runs the same steps as tasks."""
    run = resolve_run(run_dir, dataset, run_id)
    gate = gate_task(run.run_dir, run.dataset, run.run_id, settings)
    reg = register_task(run.run_dir, run.dataset, run.run_id, settings)
    why = "gate passed" if gate["passed"] else "gate refused: " + "; ".join(gate["reasons"])
    promo = promote_task(reg["version"], reg["dataset"], gate["passed"], settings, by,
                         why[:500])
    return {"version": reg["version"], "dataset": reg["dataset"], "run_id": run.run_id,
            "passed": gate["passed"], "reasons": gate["reasons"], "summary": gate["summary"],
            "moved": promo["moved"], "production": promo["production"],
            "gate_html": str(run.export / "gate.html")}


def move_alias_task(action: str, dataset: str, alias: str = "production",
                    version: str | None = None, by: str | None = None, why: str = "",
                    settings: Settings | None = None) -> dict:
    """`promote` a version (or an alias to copy) to `alias`, or `rollback` the alias to what it
    held before its last move: what `shoprec models promote/rollback` does, for the manual DAG.
    Both check the version's files against its manifest first (a damaged one is refused)."""
    from shoprec.registry import Registry

    s = settings or get_settings()
    reg = Registry(_store(s), dataset)
    if action == "promote":
        if not version:
            raise ValueError("promote needs a version (or an alias to copy)")
        target = reg.resolve(version)
        move = reg.promote(target, alias, by, why)
    elif action == "rollback":
        move = reg.rollback(alias, by, why)
    else:
        raise ValueError(f"action {action!r}: promote or rollback")
    summary = (move.summary() + (f"; {move.note}" if move.note else "") if move
               else f"{alias} already points at {target}: nothing to do")
    return {"dataset": dataset, "action": action, "alias": alias, "moved": move is not None,
            "summary": summary, "aliases": reg.aliases()}
