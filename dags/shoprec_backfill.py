"""
### Shoprec backfill (manual)

Re-run the data chain for a **date range**: the shop delivered old days late, or batches were
put back with `shoprec lake requeue`. **plan** finds the landing batches whose events fall in
`start`..`end` (UTC days, inclusive) → **validate** only those → **dbt** (one `dbt build`; its
incremental features re-derive every day from the earliest new one on) → **publish_snapshot**
→ **Feast**, re-loading the online store from `start` on (the daily increment re-reads only the
last days before its watermark, so a user whose latest activity is in the range would stay
offline) → **check_quarantine**.

- *params*: `dataset`, `start`, `end` (YYYY-MM-DD), `full_refresh` (rebuild dbt from scratch).
- Batches of the range already validated are listed by **plan** and not judged again; landing
  batches whose events cannot be read are left to the daily run, which quarantines them.
- Idempotent: a second run of the same range finds nothing new and changes nothing (Feast
  re-writes the same latest values).
- Same retries, time limits and alerts as `shoprec_pipeline`; the CLI twin is
  `shoprec backfill START END`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from shoprec.config import get_settings
from shoprec.names import PATTERN_TEXT
from shoprec.pipeline import ops
from shoprec.pipeline.chain import data_chain
from shoprec.pipeline.tasks import MACROS

SETTINGS = get_settings()


@dag(
    dag_id="shoprec_backfill",
    **ops.manual_dag_args(SETTINGS),
    doc_md=__doc__,
    user_defined_macros=MACROS,
    params={
        "dataset": Param(SETTINGS.dataset, type="string", pattern=PATTERN_TEXT,
                         description="Dataset namespace in the lake."),
        "start": Param(type="string", format="date",
                       description="First day of the range (UTC), YYYY-MM-DD."),
        "end": Param(type="string", format="date",
                     description="Last day of the range (UTC), inclusive."),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild dbt's incremental models from scratch."),
    },
)
def shoprec_backfill():
    @task(multiple_outputs=True, **ops.FINAL)
    def plan(params: dict | None = None) -> dict:
        """The range's batches: landing ones to validate, validated ones already in."""
        from shoprec.pipeline.backfill import describe
        from shoprec.pipeline.backfill import plan as plan_range

        p = params or {}
        out = plan_range(p["start"], p["end"], p.get("dataset"))
        print(describe(out))
        return out

    planned = plan()
    data_chain(SETTINGS, batches=planned["landing"], since=planned["since"])


shoprec_backfill()
