"""The demo's last step: start `shoprec serve` on the demo's home, ask it for a few shoppers'
recommendations, post a click for one of them and show that their list changed, then stop it."""

from __future__ import annotations

import datetime as dt
import os
import sys
import uuid
from collections.abc import Callable

from shoprec.children import Child, free_port
from shoprec.config import Settings


def _lines(rec: dict, top: int) -> list[str]:
    return [f"{i + 1:>2}. {it['title'] or it['item_id']} ({it['category'] or '?'}) — "
            f"{it['reason']}" for i, it in enumerate(rec["items"][:top])]


def show(s: Settings, say: Callable[[str], None], users: int = 2, top: int = 5) -> dict:
    """Ask the service; returns what it answered (per user, and the list after the click)."""
    import httpx

    port = free_port()
    env = {**os.environ, "SHOPREC_HOME": str(s.root)}
    log = s.demo_log("serve")
    log.parent.mkdir(parents=True, exist_ok=True)
    child = Child([sys.executable, "-m", "shoprec.cli", "serve", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    out: dict = {"url": url, "users": {}}
    try:
        child.wait_http(f"{url}/readyz", timeout_s=180)
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
            sample = http.get("/users/sample").raise_for_status().json()["users"][:users]
            for user in [*sample, f"new-shopper-{uuid.uuid4().hex[:6]}"]:
                rec = http.get(f"/recommendations/{user}", params={"k": 20}).raise_for_status()
                rec = rec.json()
                out["users"][user] = rec
                say(f"   {user} ({rec['strategy']}, model {rec['model_version']}):")
                for line in _lines(rec, top):
                    say(f"     {line}")
            if sample:
                user = sample[0]
                before = out["users"][user]
                item = before["items"][-1]  # a click on the last of the 20
                event = {"event_id": f"demo-{uuid.uuid4().hex}", "user_id": user,
                         "item_id": item["item_id"], "event_type": "click",
                         "event_timestamp": dt.datetime.now(dt.UTC).isoformat(),
                         "session_id": f"demo-{uuid.uuid4().hex[:8]}"}
                http.post("/events", json=event).raise_for_status()
                after = http.get(f"/recommendations/{user}", params={"k": 20}).raise_for_status()
                out["after_click"] = after = after.json()
                changed = [i["item_id"] for i in after["items"]] != \
                    [i["item_id"] for i in before["items"]]
                say(f"   {user} clicks {item['title'] or item['item_id']}: the list "
                    f"{'changed' if changed else 'did not change'} at once:")
                for line in _lines(after, top):
                    say(f"     {line}")
                out["changed"] = changed
    finally:
        child.stop()
    return out
