"""
### Shoprec model aliases (manual)

Point the registry's `production` (or `candidate`) alias at a chosen version, or roll it back to
the version it held before its last move: what `shoprec models promote` / `rollback` do, from
the UI's trigger form. Serving follows `production` within `SHOPREC_SERVING__RELOAD_SECONDS`
(or at once: `POST /admin/reload`).

- *params*: `action` (promote / rollback), `version` (a version id, or an alias to copy; only for
  promote), `alias`, `dataset`, `why` (recorded in the alias's history with the run as author).
- The version's files are checked against its manifest first: a damaged one is refused and the
  alias stays where it was. Never retried (a refusal does not heal); a failure writes an alert.
- See the versions: `shoprec models list`, or the registry's `history` of each alias.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from shoprec.config import get_settings
from shoprec.names import PATTERN_TEXT
from shoprec.pipeline import ops

SETTINGS = get_settings()


@dag(
    dag_id="shoprec_models",
    **ops.manual_dag_args(SETTINGS),
    doc_md=__doc__,
    params={
        "action": Param("promote", enum=["promote", "rollback"],
                        description="promote a version, or roll the alias back one move."),
        "version": Param(None, type=["null", "string"], pattern=PATTERN_TEXT,
                         description="Version id or alias to copy (promote only)."),
        "alias": Param("production", enum=["production", "candidate"]),
        "dataset": Param(SETTINGS.dataset, type="string", pattern=PATTERN_TEXT),
        "why": Param("", type="string", maxLength=500,
                     description="Why: kept in the alias's history."),
    },
)
def shoprec_models():
    @task(**ops.FINAL)
    def move_alias(params: dict | None = None, run_id: str | None = None) -> dict:
        """Promote or roll back, as the params say."""
        from shoprec.pipeline.training import move_alias_task

        p = params or {}
        out = move_alias_task(p["action"], p["dataset"], p.get("alias") or "production",
                              p.get("version"), by=f"airflow:shoprec_models/{run_id}",
                              why=p.get("why") or "")
        print(out["summary"])
        return out

    move_alias()


shoprec_models()
