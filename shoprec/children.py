"""Child processes that serve HTTP (shoprec serve, uvicorn, Airflow's components): started in a
session of their own with their output in a log file, waited for until a URL answers, stopped
by their own pid (SIGTERM, then SIGKILL), so nothing is left running and nothing else is hit."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port free on loopback now (the child binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChildFailed(RuntimeError):
    """The child exited, or did not answer in time; the message ends with its log's tail."""


class Child:
    def __init__(self, cmd: list[str], env: dict[str, str], log: Path,
                 cwd: Path | None = None):
        self.cmd = cmd
        self.log = Path(log)
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def name(self) -> str:
        """The command in a few words (`python -m shoprec.cli serve`)."""
        return " ".join(Path(c).name for c in self.cmd[:5])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_http(self, url: str, timeout_s: float = 120.0) -> None:
        """Until GET `url` answers 200; ChildFailed (the child stopped) when it exits first or
        the time runs out."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise ChildFailed(f"{self.name} exited {self.proc.returncode} (log: "
                                  f"{self.log}):\n{self.output()}")
            try:
                if httpx.get(url, timeout=5, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ChildFailed(f"{self.name}: {url} did not answer in {timeout_s:.0f} s "
                                  f"(log: {self.log}):\n{self.output()}")
            time.sleep(0.2)

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace_s`; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


class RedisUnavailable(RuntimeError):
    """redis-server is not installed, or did not answer in time."""


@contextlib.contextmanager
def redis_server(prefix: list[str] | None = None, log: Path | None = None,
                 timeout_s: float = 20.0) -> Iterator[tuple[int, subprocess.Popen]]:
    """(port, process) of a redis-server of the caller's own on a free loopback port, without
    persistence: tests and benchmarks never stop, flush or reconfigure the shared one. `prefix`
    wraps the command (e.g. `taskset -c 1`). Stopped on the way out unless already gone (a test
    that kills it on purpose)."""
    import redis

    if shutil.which("redis-server") is None:
        raise RedisUnavailable("redis-server is not installed (Debian: apt-get install "
                               "redis-server)")
    port = free_port()
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([*(prefix or []), "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize",
                             "no"], stdout=out, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise RedisUnavailable(f"redis-server on port {port} did not start") \
                        from None
                time.sleep(0.05)
    finally:
        client.close()
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log:
            out.close()


@contextlib.contextmanager
def moto_s3_server(log: Path, timeout_s: float = 60.0) -> Iterator[str]:
    """The endpoint URL of an S3-compatible server process of the caller's own (moto in server
    mode, from the dev extra) on a free loopback port; stopped on the way out. Credentials are
    the caller's business (moto accepts any)."""
    import sys

    port = free_port()
    script = Path(sys.executable).with_name("moto_server")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=0.5):
                break
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
