"""`shoprec lake ...`: what happened to each delivery, and taking a batch back or correcting it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from shoprec.config import get_settings

app = typer.Typer(help="The lake's batches: history, sync, retract, replace, requeue.",
                  no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)


@app.command("history")
def history_cmd(
    batch: str = typer.Argument(None, help="A batch id (default: every delivery)."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """The ledger: every verdict and move, oldest first (landed, validated, quarantined,
    waiting, retracted, superseded)."""
    from shoprec.lake_sync import session
    from shoprec.names import check_name
    from shoprec.validation.ledger import history

    s = get_settings()
    with session(s, dataset, write=False):  # the bucket's ledger when the lake is on S3
        recs = history(s, dataset, check_name(batch, "batch") if batch else None)
    for r in recs:
        arrival = f" arrival {r['arrival']}" if r.get("arrival") is not None else ""
        typer.echo(f"{r['at'][:19]}  {r['batch_id']:<24} {r['status']:<11}{arrival}  "
                   f"{r.get('reason') or ''}".rstrip())
    if not recs:
        console.print("no records")


@app.command("sync")
def sync_cmd(dataset: str = typer.Option(None, help="Dataset (default: shop).")) -> None:
    """With the lake on object storage (SHOPREC_STORAGE_URI): bring this home's working copy up
    to date and upload what it has not uploaded yet (a killed task's changes)."""
    from shoprec.lake_sync import sync_now

    s = get_settings()
    done = sync_now(s, dataset)
    if done is None:
        console.print("the lake is local (SHOPREC_STORAGE_URI unset): nothing to sync")
        return
    pulled, pushed = done
    console.print(f"[green]synced[/] {s.uri(s.lake(dataset))}: pulled {pulled.downloaded} "
                  f"file(s) ({pulled.bytes / 2**20:.1f} MiB), removed {pulled.deleted}, in "
                  f"{pulled.seconds:.1f} s; pushed {pushed.uploaded} ({pushed.bytes / 2**20:.1f} "
                  f"MiB), deleted {pushed.deleted}, in {pushed.seconds:.1f} s",
                  markup=True, highlight=False)


@app.command("retract")
def retract_cmd(
    batch: str = typer.Argument(..., help="A validated batch id."),
    reason: str = typer.Option(..., help="Why (kept with the batch and in the ledger)."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
    rebuild: bool = typer.Option(True, help="Rebuild the warehouse and online store now."),
) -> None:
    """Take a validated batch back (to quarantine, with the reason) and rebuild what derives
    from it: dbt in full, the analysts' snapshot, Feast's exports and online store."""
    from shoprec.lifecycle import rebuild_derived, retract

    s = get_settings()
    move = retract(batch, reason, dataset=dataset, settings=s)
    console.print(f"[green]retract[/] {move.summary()}")  # done, whatever the rebuild does
    if rebuild:
        done = rebuild_derived(s, dataset or s.dataset)
        console.print("[green]rebuilt[/] " + ", ".join(f"{k}: {v}" for k, v in done.items()))


@app.command("replace")
def replace_cmd(
    batch: str = typer.Argument(..., help="The batch id to correct."),
    source: Path = typer.Argument(..., help="A folder with the corrected events/items/users "
                                            ".parquet (contract columns)."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Land a corrected version of a batch; `shoprec validate` judges it and, when it passes,
    it supersedes the validated version (the old one is kept in quarantine)."""
    from shoprec.lifecycle import land_version

    move = land_version(batch, source, dataset=dataset, settings=get_settings())
    console.print(f"[green]replace[/] {move.summary()}")


@app.command("requeue")
def requeue_cmd(
    batches: list[str] = typer.Argument(..., help="Quarantined batch ids."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Put batches the gate quarantined back in landing, to be judged again by the rules as
    they are now (e.g. after `shoprec data profile --set rules.funnel=false`)."""
    from shoprec.lifecycle import requeue

    s = get_settings()
    for batch in batches:
        move = requeue(batch, dataset=dataset, settings=s)
        console.print(f"[green]requeue[/] {move.summary()}")
