"""`shoprec models ...`: the registry: list, show, gate, register, promote, rollback, history,
gc."""

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


@app.command("list")
def list_cmd(dataset: str = DATASET) -> None:
    """Every version, oldest first: when, what it scored, which aliases point at it."""
    from shoprec.registry import headline

    reg = _registry(dataset)
    pointing: dict[str, list[str]] = {}
    for alias, version in reg.aliases().items():
        pointing.setdefault(version, []).append(alias)
    versions = reg.versions()
    for v in versions:
        m = reg.manifest(v)
        aliases = ",".join(pointing.get(v, []))
        typer.echo(f"{v}  {str(m.get('registered_at'))[:19]}  {m.get('recommender', '?'):<6}  "
                   f"{headline(m)}  {m.get('run_id')}" + (f"  ← {aliases}" if aliases else ""))
    console.print(f"{len(versions)} version(s) of {reg.dataset} in "
                  f"{reg.store.uri(reg.dataset)}", markup=False, highlight=False)


@app.command("show")
def show_cmd(ref: str = typer.Argument(..., help="A version or an alias."),
             dataset: str = DATASET) -> None:
    """A version's manifest (files and checksums, data window, metrics, run) as JSON."""
    reg = _registry(dataset)
    version = reg.resolve(ref)
    manifest = reg.manifest(version)
    manifest["aliases"] = sorted(a for a, v in reg.aliases().items() if v == version)
    typer.echo(json.dumps(manifest, indent=1, default=str))


def _export_of(run: str | None, ds: str) -> Path:
    """The export folder of a run id, a run folder or an export folder (default: latest run)."""
    from shoprec.names import check_name
    from shoprec.registry import RegistryError

    s = get_settings()
    if run is None:
        from training.runner import latest_run

        folder = latest_run(s, ds)
    elif any(sep in run for sep in ("/", os.sep, os.altsep) if sep) or run in (".", ".."):
        folder = Path(run).expanduser().resolve()
    else:
        folder = s.runs_dir(ds) / check_name(run, "run")
    export = folder / "export" if (folder / "export").is_dir() else folder
    if not (export / "metadata.json").is_file():
        raise RegistryError(f"{folder}: neither a run folder with an export/ nor an export "
                            f"(no metadata.json)")
    return export


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
    from shoprec.names import check_name
    from shoprec.registry.gates import read_report, run_gates

    s = get_settings()
    ds = dataset or s.dataset
    export = _export_of(run, ds)
    rid = run_id or (export.parent.name if export.name == "export" else export.name)
    reg = _registry(ds)
    before = reg.run_version(check_name(rid, "run"))
    if not before and gate:
        report = run_gates(s, export.parent if export.name == "export" else export, ds,
                           store=reg.store)
        console.print(report.summary(), markup=False, highlight=False)
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
    from shoprec.registry.gates import run_gates

    s = get_settings()
    ds = dataset or s.dataset
    export = _export_of(run, ds)
    run_dir = export.parent if export.name == "export" else export
    if register:
        from shoprec.pipeline.training import gate_register_promote

        out = gate_register_promote(s, run_dir, dataset=ds, run_id=run_id)
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
    """Point an alias at a version: one atomic write, recorded in the alias's history."""
    reg = _registry(dataset)
    target = reg.resolve(version)
    move = reg.promote(target, alias, by, why)
    if move is None:
        console.print(f"{alias} already points at {target}: nothing to do")
    else:
        console.print(f"[green]promoted[/] {move.summary()}")


@app.command("rollback")
def rollback_cmd(alias: str = ALIAS, why: str = WHY, by: str = BY,
                 dataset: str = DATASET) -> None:
    """Move an alias back to the version it held before its last move."""
    move = _registry(dataset).rollback(alias, by, why)
    console.print(f"[green]rolled back[/] {move.summary()}")


@app.command("history")
def history_cmd(alias: str = typer.Option(None, help="candidate or production (default: "
                                                     "both)."),
                dataset: str = DATASET) -> None:
    """Every alias move, oldest first."""
    records = _registry(dataset).history(alias)
    for r in records:
        typer.echo(f"{r.get('at', '')[:19]}  {r.get('alias'):<10} {r.get('action'):<8} "
                   f"{r.get('from') or '(none)'} → {r.get('to')}  by {r.get('by')}"
                   + (f": {r['why']}" if r.get("why") else ""))
    if not records:
        console.print("no moves yet")


@app.command("gc")
def gc_cmd(keep: int = typer.Option(5, help="Newest versions kept besides the aliased ones."),
           dry_run: bool = typer.Option(False, help="Only say what would be deleted."),
           dataset: str = DATASET) -> None:
    """Delete versions no alias points at (nor would roll back to), beyond the newest KEEP."""
    reg = _registry(dataset)
    gone = reg.gc(keep, dry_run=dry_run)
    for v in gone:
        typer.echo(v)
    console.print(f"[green]gc[/] {'would delete' if dry_run else 'deleted'} {len(gone)} "
                  f"version(s) of {reg.dataset}; {len(reg.versions())} left")
