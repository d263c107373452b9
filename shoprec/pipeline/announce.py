"""Tell Airflow that new data landed: an asset event for `shoprec-landing-<dataset>` through
Airflow's REST API, which `shoprec_pipeline` is scheduled on (besides its daily run).

Called once per landing command (import, simulate, serving's event flush), not per batch. Off
unless `airflow.api_url` is set. It never fails the landing: the data is already safe in the
lake, and the daily schedule picks up whatever an announcement missed (Airflow down, wrong
password); what happened is returned as one line for the caller to print or log.
"""

from __future__ import annotations

import logging

from shoprec.config import Settings, get_settings

log = logging.getLogger("shoprec.announce")
TIMEOUT_S = 10.0


class AnnounceError(RuntimeError):
    pass


def _token(client, s: Settings) -> str:
    a = s.airflow
    if not a.api_username or a.api_password is None:
        raise AnnounceError("SHOPREC_AIRFLOW__API_USERNAME / __API_PASSWORD are not set")
    r = client.post("/auth/token", json={"username": a.api_username,
                                         "password": a.api_password.get_secret_value()})
    if r.status_code not in (200, 201):
        raise AnnounceError(f"POST /auth/token answered {r.status_code}")
    return r.json()["access_token"]


def asset_id(client, name: str) -> int:
    """The id of the asset named `name` (Airflow knows it once a DAG that uses it is parsed)."""
    r = client.get("/api/v2/assets", params={"name_pattern": name, "limit": 100})
    if r.status_code != 200:
        raise AnnounceError(f"GET /api/v2/assets answered {r.status_code}")
    ids = [a["id"] for a in r.json().get("assets", []) if a.get("name") == name]
    if not ids:
        raise AnnounceError(f"Airflow knows no asset {name!r} yet (is shoprec_pipeline parsed?)")
    return ids[0]


def announce_landing(dataset: str, batches: list[str], source: str,
                     settings: Settings | None = None) -> str:
    """Post the landing asset event of `dataset` naming `batches`; one line saying what
    happened (never raises)."""
    import httpx

    from shoprec.pipeline.assets import asset_name

    s = settings or get_settings()
    if not s.airflow.api_url or not batches:
        return "airflow: not announced (no SHOPREC_AIRFLOW__API_URL)" if batches else \
            "airflow: nothing landed"
    name = asset_name("landing", dataset)
    try:
        with httpx.Client(base_url=s.airflow.api_url.rstrip("/"), timeout=TIMEOUT_S,
                          trust_env=False) as client:
            client.headers["Authorization"] = f"Bearer {_token(client, s)}"
            r = client.post("/api/v2/assets/events", json={
                "asset_id": asset_id(client, name),
                "extra": {"dataset": dataset, "batches": batches[:100], "n_batches": len(batches),
                          "source": source}})
            if r.status_code not in (200, 201):
                raise AnnounceError(f"POST /api/v2/assets/events answered {r.status_code}: "
                                    f"{r.text[:200]}")
    except (AnnounceError, httpx.HTTPError, KeyError, ValueError) as e:
        line = (f"airflow: landing of {len(batches)} batch(es) not announced ({e}); the daily "
                "schedule will pick it up")
        log.warning(line)
        return line
    return f"airflow: announced {len(batches)} batch(es) as an event of asset {name}"
