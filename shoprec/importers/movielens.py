"""MovieLens-100K → the data contract, as one landing batch (`ml-100k`).

Mapping (a shop-shaped view of a ratings log, following RecBole's implicit-feedback protocol where
every rating is one interaction):

- events: every rating is one `view` event. The rating value is dropped (the contract has no rating
  column); `price` and `quantity` stay null. `event_id` = `ml-<user>-<item>` (a user rates a movie
  at most once in ML-100K, so it is unique); `session_id` = `<user>-<UTC day>`; `event_seq` = the
  rating's 0-based row in `u.data` (or `ml-100k.inter`, the same order): a user often rates
  several movies in one second, and their order is the file's (as RecBole keeps it), never the
  item id's (contract.TIE_ORDER).
- items: `category` = the first listed genre (GroupLens order) or `unknown`; `brand` = the release
  decade (`1990s`), `unknown` without a year — deterministic, and coarse like a brand; `price` =
  1.0, a documented placeholder (ML has no prices); `created_at` = the release date (the raw files
  give a day, RecBole's atomic files only a year → 1 January), else the movie's first rating.
- users: `signup_at` = the user's first rating; `segment` = occupation; `country` null.

Sources, first hit wins: (a) `source`, a directory of raw GroupLens files (`u.data`, `u.item`,
`u.user`) or RecBole atomic files (`ml-100k.inter/.item/.user`); (b) the extracted copy cached under
`Settings.movielens_cache()`; (c) a `recbole==1.2.1` wheel already on disk, in
`Settings.wheel_cache()` (both under SHOPREC_HOME); (d) GroupLens' ml-100k.zip (5 s timeout);
(e) `pip download` of that wheel, whose `recbole/dataset_example/ml-100k/` holds the atomic
files. Disk comes before network; whatever is fetched is extracted into (b): later runs are offline.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from shoprec.atomic import atomic_path
from shoprec.config import Settings, get_settings
from shoprec.contract import conform
from shoprec.importers import ImportReport
from shoprec.lake import find_batch, write_batch
from shoprec.lake_sync import synced

log = logging.getLogger(__name__)

BATCH_ID = "ml-100k"
EXPECTED = {"events": 100_000, "items": 1_682, "users": 943}
PLACEHOLDER_PRICE = 1.0
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
DOWNLOAD_TIMEOUT_S = 5
RECBOLE = "recbole==1.2.1"
RECBOLE_WHEEL_GLOB = "recbole-1.2.1-*.whl"
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"
RAW_FILES = ("u.data", "u.item", "u.user")
ATOMIC_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


class SourceUnavailable(RuntimeError):
    """No local copy, no download: the message lists what was tried."""


@synced()
def import_movielens(dataset: str = "ml-100k", source: Path | None = None,
                     settings: Settings | None = None) -> ImportReport:
    """Import ML-100K into `dataset` as landing batch `ml-100k`; a no-op when it landed before."""
    settings = settings or get_settings()
    hit = find_batch(BATCH_ID, dataset=dataset, settings=settings)
    if hit:
        return ImportReport(dataset, BATCH_ID, hit[1], skipped=True)
    src = _layout_dir(Path(source)) if source else _resolve_source(settings)
    tables = to_contract(*read_movielens(src), source=str(src))
    counts = {k: t.num_rows for k, t in tables.items()}
    if source is None and counts != EXPECTED:  # a cached/downloaded copy must be the real thing
        raise ValueError(f"{src}: expected {EXPECTED} rows, found {counts}; "
                         f"delete {src} and import again")
    path = write_batch(BATCH_ID, tables, dataset=dataset, settings=settings)
    return ImportReport(dataset, BATCH_ID, path, imported=counts,
                        rejected=dict.fromkeys(counts, 0))


# ---------------------------------------------------------------- reading both file formats


def _layout_dir(d: Path) -> Path:
    """`d` or `d/ml-100k` (how the zip extracts), whichever holds a complete file set."""
    for cand in (d, d / "ml-100k"):
        if all((cand / f).is_file() for f in RAW_FILES) or \
                all((cand / f).is_file() for f in ATOMIC_FILES):
            return cand
    raise FileNotFoundError(f"{d}: no MovieLens-100K files; expected {list(RAW_FILES)} "
                            f"(GroupLens) or {list(ATOMIC_FILES)} (RecBole atomic)")


def _read(path: Path, sep: str, names: list[str] | None, encoding: str = "utf-8") -> pd.DataFrame:
    """Every column as text, no quoting (titles hold quotes), no NA guessing ('None' is a title)."""
    df = pd.read_csv(path, sep=sep, header=None if names else 0, names=names, dtype=str,
                     quoting=csv.QUOTE_NONE, keep_default_na=False, encoding=encoding)
    if not names:  # atomic headers are typed: `user_id:token`
        df.columns = [c.split(":")[0] for c in df.columns]
    return df


def read_movielens(d: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ratings[user_id,item_id,timestamp], items[item_id,title,genre,released,year],
    users[user_id,occupation]) from either file format; `released` is a UTC datetime or NaT."""
    d = _layout_dir(d)
    if (d / "u.data").is_file():
        ratings = _read(d / "u.data", "\t", ["user_id", "item_id", "rating", "timestamp"])
        # u.item is ISO-8859-1: id|title|release date|video release|IMDb URL|19 genre flags
        raw = _read(d / "u.item", "|", ["item_id", "title", "release", "video", "url", *GENRES],
                    encoding="latin-1")
        flags = raw[list(GENRES)].eq("1")
        genre = flags.idxmax(axis=1).where(flags.any(axis=1), "unknown")
        released = pd.to_datetime(raw["release"], format="%d-%b-%Y", errors="coerce", utc=True)
        items = pd.DataFrame({"item_id": raw["item_id"], "title": raw["title"], "genre": genre,
                              "released": released})
        users = _read(d / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip_code"])
    else:  # RecBole atomic: item_id, movie_title, release_year, class (space-separated genres)
        ratings = _read(d / "ml-100k.inter", "\t", None)
        raw = _read(d / "ml-100k.item", "\t", None)
        year = pd.to_numeric(raw["release_year"].where(raw["release_year"].str.fullmatch(r"\d{4}")),
                             errors="coerce")
        released = pd.to_datetime(year.astype("Int64").astype("string") + "-01-01",
                                  format="%Y-%m-%d", errors="coerce", utc=True)
        genre = raw["class"].str.split().str[0].fillna("unknown")
        title = raw["movie_title"].replace("unkonwn", "unknown")  # RecBole's typo, movie 267
        items = pd.DataFrame({"item_id": raw["item_id"], "title": title,
                              "genre": genre, "released": released})
        users = _read(d / "ml-100k.user", "\t", None)
    ratings["timestamp"] = pd.to_numeric(ratings["timestamp"]).astype("int64")
    # the year decides the brand; the title's "(1995)" covers a missing/garbled release field
    title_year = pd.to_numeric(items["title"].str.extract(_TITLE_YEAR)[0], errors="coerce")
    items["year"] = items["released"].dt.year.astype("Int64").fillna(title_year.astype("Int64"))
    items["genre"] = items["genre"].replace("", "unknown")
    return ratings[["user_id", "item_id", "timestamp"]], items, users[["user_id", "occupation"]]


def to_contract(ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
                source: str) -> dict[str, pa.Table]:
    """The three contract tables; events sorted by time, ties in the order `ratings` gives
    them (the file's), which `event_seq` keeps."""
    ratings = ratings.assign(event_seq=np.arange(len(ratings), dtype=np.int64))
    ratings = ratings.sort_values(["timestamp", "event_seq"], kind="stable")
    ts = ratings["timestamp"]
    day = pd.to_datetime(ts, unit="s", utc=True).dt.strftime("%Y-%m-%d")
    events = pa.table({
        "event_id": "ml-" + ratings["user_id"] + "-" + ratings["item_id"],
        "user_id": ratings["user_id"],
        "item_id": ratings["item_id"],
        "event_type": pd.Series("view", index=ratings.index),
        "event_timestamp": ts,
        "session_id": ratings["user_id"] + "-" + day,
        "event_seq": ratings["event_seq"],
    })
    first_item = ts.groupby(ratings["item_id"]).min()
    first_user = ts.groupby(ratings["user_id"]).min()
    fallback = int(ts.min())  # only for rows the log never mentions (none in ML-100K)
    released = (items["released"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    created = released.fillna(items["item_id"].map(first_item)).fillna(fallback)
    brand = (items["year"] // 10 * 10).astype("string") + "s"
    item_table = pa.table({
        "item_id": items["item_id"],
        "title": items["title"],
        "category": items["genre"],
        "brand": brand.fillna("unknown"),
        "price": pd.Series(PLACEHOLDER_PRICE, index=items.index),
        "created_at": created.astype("int64"),
    })
    user_table = pa.table({
        "user_id": users["user_id"],
        "signup_at": users["user_id"].map(first_user).fillna(fallback).astype("int64"),
        "segment": users["occupation"].mask(users["occupation"].eq("")),
    })
    # epoch seconds, said outright: films released before 1990 are outside unit detection
    return {"events": conform(events, "events", source, time_unit="s"),
            "items": conform(item_table, "items", source, time_unit="s"),
            "users": conform(user_table, "users", source, time_unit="s")}


# ---------------------------------------------------------------- finding the files


def _resolve_source(settings: Settings) -> Path:
    cache = settings.movielens_cache()
    try:
        return _layout_dir(cache)
    except FileNotFoundError:
        pass
    wheel = _find_wheel(settings)
    tried: list[str] = []
    if wheel is None:
        try:
            log.info("downloading %s", GROUPLENS_URL)
            with urllib.request.urlopen(GROUPLENS_URL, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                data = resp.read()
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return _extract(zf, {f"ml-100k/{f}": f for f in RAW_FILES}, cache)
        except (OSError, zipfile.BadZipFile, KeyError) as e:  # URLError/timeouts are OSErrors
            tried.append(f"{GROUPLENS_URL}: {e}")
            log.info("GroupLens download failed (%s); falling back to the %s wheel", e, RECBOLE)
        wheel = _download_wheel(settings, tried)
    with zipfile.ZipFile(wheel) as zf:
        return _extract(zf, {RECBOLE_PREFIX + f: f for f in ATOMIC_FILES}, cache)


def _find_wheel(settings: Settings) -> Path | None:
    for whl in sorted(settings.wheel_cache().glob(RECBOLE_WHEEL_GLOB)):
        if _wheel_ok(whl):
            return whl
    return None


def _wheel_ok(whl: Path) -> bool:
    try:
        with zipfile.ZipFile(whl) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return all(RECBOLE_PREFIX + f in names for f in ATOMIC_FILES)


def _download_wheel(settings: Settings, tried: list[str]) -> Path:
    """`pip download` through the user's own pip configuration (index, proxy, certificates)."""
    dest = settings.wheel_cache()
    dest.mkdir(parents=True, exist_ok=True)
    log.info("pip download %s → %s", RECBOLE, dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", RECBOLE, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        err = proc.stderr.strip()[-2000:] if proc.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        err = str(e)
    wheel = _find_wheel(settings)
    if wheel is None:
        tried.append(f"{' '.join(cmd)}: {err or 'no usable wheel'}")
        raise SourceUnavailable("MovieLens-100K is not available; tried:\n  " + "\n  ".join(
            tried) + "\nPass --source <dir with u.data, u.item, u.user> to import a local copy.")
    return wheel


def _extract(zf: zipfile.ZipFile, members: dict[str, str], cache: Path) -> Path:
    """Copy `members` (zip name → file name) into `cache` atomically: temp dir, then rename."""
    with atomic_path(cache, directory=True, replace=False) as tmp:
        for member, name in members.items():
            (tmp / name).write_bytes(zf.read(member))  # zipfile checks each member's CRC
        if cache.exists():  # an incomplete copy from an older crash
            shutil.rmtree(cache)
    return cache
