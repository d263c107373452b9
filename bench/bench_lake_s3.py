"""The lake on object storage: what keeping the lake in a bucket costs each stage.

`python -m bench.bench_lake_s3 [tiny|small|large]`: the same commands on two homes, one with the
lake local (the default), one with `SHOPREC_STORAGE_URI` on an S3-compatible server on loopback
(moto in server mode: its own process); then a third home (another machine) pulls the whole
lake, and one more day is landed and validated. Each command is the CLI in a child process.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from bench.report import run_measured, write_section
from shoprec.children import moto_s3_server

BIN = str(Path(sys.executable).with_name("shoprec"))
DAYS = {"tiny": 14, "small": 29, "large": 89}
BUCKET = "bench-lake"


def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main(scale: str = "large") -> None:
    import boto3

    work = Path(tempfile.mkdtemp(prefix=f"shoprec-bench-lake-{scale}-"))
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
             "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(creds)
    rows, days = [], DAYS[scale]
    try:
        with moto_s3_server(work / "moto.log") as endpoint:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            s3 = {"SHOPREC_STORAGE_URI": f"s3://{BUCKET}/bench",
                  "SHOPREC_S3_ENDPOINT_URL": endpoint}
            local = {"SHOPREC_HOME": str(work / "local"), "SHOPREC_STORAGE_URI": ""}
            remote = {"SHOPREC_HOME": str(work / "s3"), **s3}
            other = {"SHOPREC_HOME": str(work / "other"), **s3}
            steps = [
                (f"data simulate --scale {scale} --days {days}", "land every day"),
                ("validate", "judge and move every batch"),
                (f"data simulate --scale {scale} --days {days + 1}", "one more day"),
                ("validate", "judge one more day"),
            ]
            for cmd, what in steps:
                t_local, rss_local, _ = run_measured([BIN, *cmd.split()], local)
                t_s3, rss_s3, _ = run_measured([BIN, *cmd.split()], remote)
                rows.append((f"`shoprec {cmd}`", what, t_local, t_s3, rss_local, rss_s3))
                print(rows[-1])
            t_pull, rss_pull, out = run_measured([BIN, "lake", "sync"], other)
            pulled = re.search(r"pulled (\d+) file\(s\) \(([\d.]+) MiB\)", out)
            t_noop, _, _ = run_measured([BIN, "lake", "sync"], other)
            lake_mib = _size(work / "s3" / "lake")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = "\n".join(f"| {c} | {w} | {a:.1f} | {b:.1f} | {b - a:+.1f} | {ra:.0f} | {rb:.0f} |"
                      for c, w, a, b, ra, rb in rows)
    body = (
        f"The {scale} shop, {days} days then one more; the lake's working copy is "
        f"{lake_mib:.0f} MiB. S3 = moto's server on loopback (a process of its own, in-memory "
        "objects): the figures are the protocol's and the sync's cost on this machine, not a "
        "network's.\n\n"
        "| command | what | local lake s | lake on S3 s | S3 cost s | local peak MiB | "
        "S3 peak MiB |\n|---|---|---|---|---|---|---|\n" + table + "\n\n"
        "Another machine (a fresh home on the same bucket):\n\n"
        "| command | s | peak MiB | moved |\n|---|---|---|---|\n"
        f"| `shoprec lake sync` (first: the whole lake) | {t_pull:.1f} | {rss_pull:.0f} | "
        f"{pulled.group(1) if pulled else '?'} files, {pulled.group(2) if pulled else '?'} "
        f"MiB |\n| `shoprec lake sync` again (nothing changed: one listing) | {t_noop:.1f} | | "
        "0 |\n")
    write_section(f"lake on S3 ({scale})", f"python -m bench.bench_lake_s3 {scale}", body)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(next((a for a in sys.argv[1:] if a in DAYS), "large"))
