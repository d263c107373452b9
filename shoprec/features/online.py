"""Reaching the online store: one Redis client built from Settings (the same host, port and
options Feast reads from its connection string), and one exception type for "Redis is down", so
the CLI and the DAG tasks can say so in one line instead of a redis-py traceback."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from shoprec.config import Settings

CONNECT_TIMEOUT_S = 5.0  # our own clients fail fast; an unroutable host would otherwise hang


class OnlineStoreUnavailable(RuntimeError):
    """The configured online store (Redis) cannot be reached."""


def _option(value: str):
    """Feast decodes `key=value` options as JSON when they parse (ssl=true, db=1)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def redis_options(settings: Settings) -> dict:
    """redis.Redis keyword arguments from SHOPREC_FEAST__REDIS_CONNECTION (host:port[,k=v...]),
    parsed as Feast parses its connection_string."""
    parts = [p.strip() for p in settings.feast.redis_connection.split(",") if p.strip()]
    nodes = [p for p in parts if "=" not in p] or ["127.0.0.1:6379"]
    host, _, port = nodes[0].partition(":")
    opts = {k: _option(v) for k, v in (p.split("=", 1) for p in parts if "=" in p)}
    return {"host": host or "127.0.0.1", "port": int(port or 6379), **opts}


def redis_address(settings: Settings) -> str:
    o = redis_options(settings)
    return f"{o['host']}:{o['port']}"


def redis_client(settings: Settings):
    """A redis-py client for the configured server (connects lazily, on the first command)."""
    import redis

    return redis.Redis(**{"socket_connect_timeout": CONNECT_TIMEOUT_S, **redis_options(settings)})


@contextlib.contextmanager
def reachable(settings: Settings) -> Iterator[None]:
    """Turn redis-py's connection errors, raised by Feast or by us, into OnlineStoreUnavailable
    naming the address and the setting to fix. A no-op for the SQLite store."""
    if settings.feast.online_store != "redis":
        yield
        return
    import redis

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise OnlineStoreUnavailable(
            f"Redis at {redis_address(settings)} is unreachable "
            f"(SHOPREC_FEAST__REDIS_CONNECTION): {e}") from e
