"""Fingerprint what the platform produces, to prove a refactor changed no output.

Runs the tiny shop through simulate → validate → dbt → Feast → train (fixed epochs, one thread)
in a fresh home and prints one JSON document: sha256 of every landing file per seed, an
order-independent digest of every warehouse table (build-time columns left out) and the test
metrics of every model. Run it before and after a change and diff the two outputs:

    .venv/bin/python scripts/fingerprint.py before.json   # on the old commit
    .venv/bin/python scripts/fingerprint.py after.json && diff before.json after.json
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

VOLATILE = {"built_at", "dbt_invocation_id", "_loaded_at", "loaded_at"}


def landing_digests(home: Path, seed: int) -> dict[str, str]:
    from shoprec.config import Settings
    from shoprec.simulate import simulate

    s = Settings(home=home)
    simulate("tiny", seed=seed, settings=s)
    land = s.zone("landing")
    return {str(p.relative_to(land)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(land.rglob("*.parquet"))}


def table_digests(warehouse: Path) -> dict[str, str]:
    import duckdb

    out = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_type = 'BASE TABLE' ORDER BY 1, 2").fetchall()
        for schema, name in tables:
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                "AND table_name = ? ORDER BY ordinal_position", [schema, name]).fetchall()
                if c not in VOLATILE]
            sel = ", ".join(f'"{c}"' for c in cols)
            rows = con.execute(f'SELECT {sel} FROM "{schema}"."{name}"').fetchall()
            lines = sorted(repr(r) for r in rows)
            out[f"{schema}.{name}"] = (f"{len(rows)} rows "
                                       + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16])
    return out


def main() -> None:
    import torch

    from shoprec.config import Settings, TrainingSettings
    from shoprec.features.materialize import materialize
    from shoprec.transform import transform
    from shoprec.validation import validate

    torch.set_num_threads(1)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="shoprec-fingerprint-") as tmp:
        result["simulate"] = {f"seed{seed}": landing_digests(Path(tmp) / f"sim{seed}", seed)
                              for seed in (7, 8)}
        s = Settings(home=Path(tmp) / "sim7",
                     training=TrainingSettings(max_epochs=3, patience=100, device="cpu"))
        validate(settings=s, workers=1)
        report = transform(settings=s)
        result["dbt"] = table_digests(report.snapshot)  # dbt holds the warehouse open
        materialize(settings=s)
        from training.train import train

        r = train(s, seed=1, progress=False, export=False)
        result["train"] = {"epochs": r.epochs, "best_epoch": r.best_epoch,
                           "metrics": {k: {m: round(v, 6) for m, v in sorted(d.items())}
                                       for k, d in sorted(r.metrics.items())}}
    out = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(out)
    else:
        sys.stdout.write(out)


if __name__ == "__main__":
    main()
