"""The scaled mode of the test suite (`SHOPREC_SCALED=1 make test`): the same tests against the
services a cluster runs, on loopback: an S3-compatible server (moto in server mode) for the lake
and the model registry, Redis as Feast's online store, PostgreSQL for Airflow's metadata.

Only settings change (the environment every Settings and every child process reads), exactly as
infra/ configures a cluster. Each home gets its own key prefix in the bucket and its own Feast
project on Redis through `{home_id}`, so tests stay as isolated as in the default mode. The
servers are the suite's own (a fresh moto server, a private redis-server, a uniquely named
PostgreSQL database): the shared instances are never flushed or reconfigured."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

BUCKET = "shoprec-scaled"
PG = {"host": "127.0.0.1", "port": 5432, "user": "root", "dbname": "postgres"}


def enabled() -> bool:
    return os.environ.get("SHOPREC_SCALED", "") not in ("", "0", "false", "no")


FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def running_moto_server(tmp: Path) -> Iterator[str]:
    """A moto S3 server process on a free loopback port, with fake credentials in the
    environment (never real ones: the boto3 config files are pointed at nothing)."""
    import pytest

    from shoprec.children import moto_s3_server

    with pytest.MonkeyPatch.context() as mp:
        for k, v in FAKE_AWS.items():
            mp.setenv(k, v)
        mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
        mp.delenv("AWS_PROFILE", raising=False)
        with moto_s3_server(tmp / "moto.log") as endpoint:
            yield endpoint


@contextlib.contextmanager
def metadata_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database for Airflow's metadata, dropped afterwards."""
    import psycopg2

    name = f"shoprec_scaled_{uuid.uuid4().hex[:12]}"
    con = psycopg2.connect(**PG)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'create database "{name}"')  # a generated name, not input
    try:
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with con.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        con.close()


def environment(s3_url: str, redis_port: int, db_url: str) -> dict[str, str]:
    """The settings of the scaled mode: what infra/shoprec.env sets on a cluster."""
    return {
        "SHOPREC_STORAGE_URI": f"s3://{BUCKET}/{{home_id}}",
        "SHOPREC_S3_ENDPOINT_URL": s3_url,
        "SHOPREC_FEAST__ONLINE_STORE": "redis",
        "SHOPREC_FEAST__REDIS_CONNECTION": f"127.0.0.1:{redis_port}",
        "SHOPREC_FEAST__PROJECT": "s{home_id}_{dataset}",
        "SHOPREC_AIRFLOW__DB_URL": db_url,
    }


def start(log_dir: Path) -> contextlib.ExitStack:
    """Start the servers and set the environment; the returned stack stops them."""
    from shoprec.children import redis_server

    stack = contextlib.ExitStack()
    try:
        s3_url = stack.enter_context(running_moto_server(log_dir))
        import boto3

        boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=BUCKET)
        redis_port, _ = stack.enter_context(redis_server(log=log_dir / "redis.log"))
        db_url = stack.enter_context(metadata_database())
    except BaseException:
        stack.close()
        raise
    os.environ.update(environment(s3_url, redis_port, db_url))
    return stack
