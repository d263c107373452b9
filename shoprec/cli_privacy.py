"""`shoprec privacy ...`: forget a user everywhere; the log that proves it without the identity."""

from __future__ import annotations

import typer
from rich.console import Console

from shoprec.config import get_settings

app = typer.Typer(help="Forget a user everywhere (GDPR art. 17); the forget log.",
                  no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)


@app.command("forget")
def forget_cmd(
    user: str = typer.Argument(..., help="The user id, or hmac:<token> from `privacy token`."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Remove every row of the user from the lake, the serving spool and the reports, rebuild
    the warehouse, its snapshot and the online store without them, and log it (the user as a
    keyed HMAC). Idempotent: killed halfway, the same command finishes the job."""
    from shoprec.privacy.forget import forget

    r = forget(user, dataset=dataset, settings=get_settings(),
               step=lambda m: console.print(f"[dim]… {m}[/]"))
    console.print(("[green]forgot[/] " if r.done else "[yellow]unfinished[/] ") + r.summary())
    if not r.done:
        raise typer.Exit(1)


@app.command("token")
def token_cmd(user: str = typer.Argument(..., help="The user id.")) -> None:
    """The user's keyed HMAC as `hmac:<token>`: a forget request that keeps the raw id out of
    where it is recorded (an Airflow run's conf, a ticket)."""
    from shoprec.privacy.identity import TOKEN_PREFIX, key, parse_request

    typer.echo(TOKEN_PREFIX + parse_request(key(get_settings()), user))


@app.command("log")
def log_cmd(dataset: str = typer.Option(None, help="Dataset (default: shop).")) -> None:
    """The forget log: when, which HMAC, what was removed where."""
    from shoprec.privacy import log

    s = get_settings()
    recs = log.records(s, dataset or s.dataset)
    for r in recs:
        removed = ", ".join(f"{k} {v:,}" for k, v in (r.get("removed") or {}).items())
        pending = "; pending: " + "; ".join(r["pending"]) if r.get("pending") else ""
        typer.echo(f"{r['at'][:19]}  hmac:{r['user'][:16]}…  {r['status']:<10} "
                   f"{removed}{pending}".rstrip())
    if not recs:
        console.print("nobody was forgotten")


@app.command("find")
def find_cmd(
    user: str = typer.Argument(..., help="The user id."),
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
) -> None:
    """Where the platform holds the user: every Parquet file and DuckDB table (through DuckDB),
    the SQLite spool and online store (keys decoded), Redis (SCAN, keys decoded), text files.
    Exit 1 when found (an audit after a forget expects nothing)."""
    from serving.events import check_id
    from shoprec.names import UsageError
    from shoprec.privacy.find import find_user

    try:
        check_id(user, "user_id")
    except ValueError as e:
        raise UsageError(str(e)) from None
    s = get_settings()
    hits = find_user(s, dataset or s.dataset, user)
    for place, n in hits.items():
        typer.echo(f"{n:>8,}  {place}")
    console.print(f"found in {len(hits)} place(s)" if hits else "found nowhere")
    if hits:
        raise typer.Exit(1)
