"""Write a benchmark's measured figures into its own section of BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nEvery figure here was written by a script in `bench/` on the machine "
          "named in its section. Re-run with the command shown; `make bench` runs them all.\n")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"
            f", {platform.system()} {platform.release()}")


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run `cmd`; return (wall seconds, peak RSS of that child in MiB, its output tail).

    os.wait4 gives the rusage of exactly this child, so repeated runs are measured separately.
    """
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024, text[-4000:]


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or add) the section `name`; other sections stay as their scripts left them."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- bench:{name} -->\n## {name}\n\n- machine: {machine()}\n- measured: {stamp}\n"
               f"- command: `{command}`\n\n{body.strip()}\n<!-- /bench:{name} -->\n")
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n",
                         re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + section
    BENCHMARKS.write_text(text)
    print(section)
