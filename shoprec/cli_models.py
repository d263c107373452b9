"""`shoprec models ...`: the registry: list, show, verify, gate, register, promote, rollback,
history, gc."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from shoprec.config import get_settings

app = typer.Typer(help="The model registry: versions, the candidate/production aliases, "
                       "rollback, garbage collection.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)

DATASET = typer.Option(None, help="Dataset (default: shop).")
ALIAS = typer.Option("production", help="candidate or production.")
WHY = typer.Option("", help="Why (kept in the alias and its history).")
BY = typer.Option(None, help="Who (default: user@host).")


def _registry(dataset: str | None):
    from shoprec.registry import Registry
    from shoprec.storage import store_from_settings

    s = get_settings()
    return Registry(store_from_settings(s), dataset or s.dataset)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


@app.command("list")
def list_cmd(dataset: str = DATASET) -> None:
    """Every version, oldest first: when, what it scored, which aliases point at it. A version
    whose manifest cannot be read is listed as damaged (exit code 1)."""
    from shoprec.registry import RegistryError, headline

    reg = _registry(dataset)
    pointing: dict[str, list[str]] = {}
    for alias, version in reg.aliases().items():
        pointing.setdefault(version, []).append(alias)
    versions = reg.versions()
    damaged = 0
    forgotten = _forgotten(reg.dataset)
    for v in versions:
        aliases = ",".join(pointing.get(v, []))
        arrow = f"  ← {aliases}" if aliases else ""
        try:
            m = reg.manifest(v)
        except RegistryError as e:
            damaged += 1
            typer.echo(f"{v}  DAMAGED: {e}{arrow}")
            continue
        typer.echo(f"{v}  {str(m.get('registered_at'))[:19]}  {m.get('recommender', '?'):<6}  "
                   f"{headline(m)}  {m.get('run_id')}{arrow}{_forgotten_mark(reg, v, forgotten)}")
    _say(f"{len(versions)} version(s) of {reg.dataset} in {reg.store.uri(reg.dataset)}"
         + (f"; {damaged} damaged (`shoprec models verify`)" if damaged else ""))
    if damaged:
        raise typer.Exit(1)


def _forgotten(dataset: str) -> set[str]:
    from shoprec.privacy import log

    return log.forgotten(get_settings(), dataset)


def _forgotten_mark(reg, version: str, forgotten: set[str]) -> str:
    """A version trained on a forgotten user's data: the next retraining replaces it
    (README § privacy)."""
    if not forgotten:
        return ""
    n = reg.trained_on(version, forgotten)
    if n is None:
        return "  [trained users unknown: exported before trained-user sets]"
    return f"  [FORGOTTEN: trained on {n} forgotten user(s)]" if n else ""


@app.command("show")
def show_cmd(ref: str = typer.Argument(..., help="A version or an alias."),
             dataset: str = DATASET) -> None:
    """A version's manifest (files and checksums, data window, metrics, run) as JSON."""
    reg = _registry(dataset)
    version = reg.resolve(ref)
    manifest = reg.manifest(version)
    manifest["aliases"] = sorted(a for a, v in reg.aliases().items() if v == version)
    typer.echo(json.dumps(manifest, indent=1, default=str))


@app.command("verify")
def verify_cmd(ref: str = typer.Argument(None, help="A version or an alias (default: every "
                                                    "version)."),
               dataset: str = DATASET) -> None:
    """Check every stored file of a version (or of every version) against its manifest's
    sha256, as loading does; names what is damaged or missing, and exits non-zero then."""
    from shoprec.registry import RegistryError

    reg = _registry(dataset)
    if ref:  # one version: intact, or one line saying what is wrong
        version = reg.resolve(ref)
        reg.verify(version)
        typer.echo(f"ok       {version}")
        return
    versions = reg.versions()
    bad = 0
    for v in versions:
        try:
            reg.verify(v)
            typer.echo(f"ok       {v}")
        except RegistryError as e:
            bad += 1
            typer.echo(f"DAMAGED  {v}: {e}")
    _say(f"{len(versions) - bad} of {len(versions)} version(s) of {reg.dataset} intact")
    if bad:
        raise typer.Exit(1)


def _run_folder(run: str | None, ds: str) -> Path:
    """The folder of a run id, a run folder or an export folder (default: the dataset's latest
    run); `shoprec.pipeline.training.resolve_run` finds its export, dataset and run id."""
    from shoprec.names import check_name

    s = get_settings()
    if run is None:
        from training.runner import latest_run

        folder = latest_run(s, ds)
    elif any(sep in run for sep in ("/", os.sep, os.altsep) if sep) or run in (".", ".."):
        folder = Path(run).expanduser().resolve()
    else:
        folder = s.runs_dir(ds) / check_name(run, "run")
    return folder


RUN = typer.Argument(None, help="A run id of the dataset, a run folder or an export folder "
                                "(default: the dataset's latest run).")


def _print_gate(report: dict) -> None:
    for c in report["checks"]:
        mark = "skip" if c.get("skipped") else ("pass" if c["passed"] else "FAIL")
        typer.echo(f"{mark:<4}  {c['name']:<24} {c['reason']}")


@app.command("register")
def register_cmd(
    run: str = RUN,
    dataset: str = DATASET,
    run_id: str = typer.Option(None, help="Run id to record (default: the run folder's name)."),
    gate: bool = typer.Option(False, "--gate", help="Run the gates first (`shoprec models "
                                                    "gate`); their verdict goes into the "
                                                    "manifest."),
) -> None:
    """Register a training run's export as a new immutable version (again: nothing new). The
    export's gate.json, when there is one, is recorded as its gate report."""
    from shoprec.pipeline.training import resolve_run
    from shoprec.registry.gates import read_report, run_gates

    s = get_settings()
    ds = dataset or s.dataset
    found = resolve_run(_run_folder(run, ds), ds, run_id)
    export, rid = found.export, found.run_id
    reg = _registry(ds)
    before = reg.run_version(rid)
    if not before and gate:
        report = run_gates(s, found.run_dir, ds, store=reg.store)
        _say(report.summary())
    version = before or reg.register(export, rid, read_report(export))
    verb = "already registered" if before else "[green]registered[/]"
    console.print(f"{verb} {version} (run {rid}) → {reg.store.uri(reg.dataset)}")
    typer.echo(version)


@app.command("gate")
def gate_cmd(
    run: str = RUN,
    dataset: str = DATASET,
    register: bool = typer.Option(False, "--register", help="Then register the run and promote "
                                  "it: candidate always, production when every gate passed."),
    run_id: str = typer.Option(None, help="Run id to record (default: the run folder's name)."),
) -> None:
    """Judge a run before promotion: beats every baseline, no regression against production,
    single-user p99 latency, sanity. Writes gate.json and gate.html into its export; exits 1
    when refused."""
    from shoprec.pipeline.training import resolve_run
    from shoprec.registry.gates import run_gates

    s = get_settings()
    ds = dataset or s.dataset
    found = resolve_run(_run_folder(run, ds), ds, run_id)
    export, run_dir = found.export, found.run_dir
    if register:
        from shoprec.pipeline.training import gate_register_promote

        out = gate_register_promote(s, run_dir, dataset=ds, run_id=found.run_id)
        report = json.loads((export / "gate.json").read_bytes())
        _print_gate(report)
        console.print(out["summary"], markup=False, highlight=False)
        for alias, what in out["moved"].items():
            console.print(f"{alias}: {what}", markup=False, highlight=False)
        passed = out["passed"]
    else:
        result = run_gates(s, run_dir, ds)
        _print_gate(result.to_json())
        console.print(result.summary(), markup=False, highlight=False)
        passed = result.passed
    console.print(f"report: {export / 'gate.html'}", markup=False, highlight=False)
    if not passed:
        raise typer.Exit(1)


@app.command("promote")
def promote_cmd(version: str = typer.Argument(..., help="A version (or an alias to copy)."),
                alias: str = ALIAS, why: str = WHY, by: str = BY,
                dataset: str = DATASET) -> None:
    """Point an alias at a version: one atomic write, recorded in the alias's history. The
    version's files are checked against its manifest first: a damaged one is refused."""
    out = _move("promote", dataset, alias, version, by, why)
    if out["moved"]:
        console.print("[green]promoted[/] ", end="")
    _say(out["summary"])


@app.command("rollback")
def rollback_cmd(alias: str = ALIAS, why: str = WHY, by: str = BY,
                 dataset: str = DATASET) -> None:
    """Move an alias back to the version it held before its last move (checked against its
    manifest first, like promote)."""
    out = _move("rollback", dataset, alias, None, by, why)
    console.print("[green]rolled back[/] ", end="")
    _say(out["summary"])


def _move(action: str, dataset: str | None, alias: str, version: str | None, by: str | None,
          why: str) -> dict:
    """The same move as the shoprec_models DAG's."""
    from shoprec.pipeline.training import move_alias_task

    s = get_settings()
    return move_alias_task(action, dataset or s.dataset, alias, version, by, why, s)


@app.command("history")
def history_cmd(alias: str = typer.Option(None, help="candidate or production (default: "
                                                     "both)."),
                dataset: str = DATASET,
                every: bool = typer.Option(False, "--all", help="Also the moves recorded but "
                                           "never applied (interrupted, or overwritten by a "
                                           "concurrent move).")) -> None:
    """Every alias move, oldest first."""
    records = _registry(dataset).history(alias, unapplied=every)
    for r in records:
        typer.echo(f"{str(r.get('at', ''))[:19]}  {str(r.get('alias')):<10} "
                   f"{str(r.get('action')):<8} {r.get('from') or '(none)'} → {r.get('to')}  "
                   f"by {r.get('by')}" + (f": {r['why']}" if r.get("why") else "")
                   + ("  (not applied)" if r.get("applied") is False else ""))
    if not records:
        _say("no moves yet")


@app.command("gc")
def gc_cmd(keep: int = typer.Option(5, help="Newest versions kept besides the aliased ones."),
           dry_run: bool = typer.Option(False, help="Only say what would be deleted."),
           dataset: str = DATASET) -> None:
    """Delete versions no alias points at (nor would roll back to), beyond the newest KEEP."""
    reg = _registry(dataset)
    gone = reg.gc(keep, dry_run=dry_run)
    for v in gone:
        typer.echo(v)
    left = len(set(reg.versions()) - set(gone))
    console.print("[green]gc[/] ", end="")
    _say(f"{'would delete' if dry_run else 'deleted'} {len(gone)} version(s) of {reg.dataset}; "
         f"{left} left")
