"""
### Shoprec privacy: forget a user (manual)

What `shoprec privacy forget` does, from the UI's trigger form: every row of one user leaves the
lake (landing, validated, quarantine), the serving spool and the gate's reports; the warehouse,
the analysts' snapshot and the Feast exports and online store are rebuilt without them; older
snapshots are deleted; the forget log records it with the user as a keyed HMAC only.

- *params*: `user` — **prefer `hmac:<token>`** from `shoprec privacy token USER_ID`: Airflow
  keeps a run's params in its metadata database, and a token names no one; a raw user id works
  too. `dataset`.
- Idempotent and resumable: a failed or killed run is finished by running it again. A snapshot
  still held open by a reader leaves the run failed, naming it; run it again once released.
- Models trained on the user are not retrained here: `shoprec models list` marks them and the
  next retraining replaces production whatever it scored (README § privacy).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from shoprec.config import get_settings
from shoprec.names import PATTERN_TEXT
from shoprec.pipeline import ops

SETTINGS = get_settings()


@dag(
    dag_id="shoprec_privacy",
    **ops.manual_dag_args(SETTINGS),
    doc_md=__doc__,
    params={
        "user": Param(type="string", minLength=1, maxLength=256,
                      description="hmac:<token> (`shoprec privacy token USER_ID`) or the id."),
        "dataset": Param(SETTINGS.dataset, type="string", pattern=PATTERN_TEXT),
    },
)
def shoprec_privacy():
    @task(**ops.FINAL)
    def forget_user(params: dict | None = None) -> dict:
        """Forget the user everywhere; fails (naming what is left) when something held on."""
        from shoprec.privacy.forget import forget_task

        p = params or {}
        out = forget_task(p["user"], p["dataset"])
        print(out["summary"])
        return out

    forget_user()


shoprec_privacy()
