"""Importers: MovieLens-100K and CSV/Parquet files → the contract, one landing batch each."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoprec import contract
from shoprec.cli import app
from shoprec.config import Settings
from shoprec.contract import ContractError
from shoprec.importers.movielens import (
    BATCH_ID,
    _find_wheel,
    import_movielens,
)
from shoprec.importers.tabular import import_file, parse_mapping

# ------------------------------------------------------------------------------ MovieLens


@pytest.fixture(scope="module")
def ml(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """ML-100K imported once for the module (the recbole wheel comes from PyPI, which every
    developer and CI machine reaches; no skip: an unreachable source is a failure)."""
    s = Settings(home=tmp_path_factory.mktemp("ml-home"))
    report = import_movielens(settings=s)
    assert not report.skipped
    return s, report.path


def read(batch: Path, kind: str) -> pa.Table:
    return pq.read_table(batch / f"{kind}.parquet")


def test_movielens_is_the_full_dataset_in_the_contract(ml: tuple[Settings, Path]) -> None:
    _, batch = ml
    assert batch.name == BATCH_ID and batch.parent.name == "landing"
    tables = {k: read(batch, k) for k in contract.SCHEMAS}
    assert {k: t.num_rows for k, t in tables.items()} == {
        "events": 100_000, "items": 1_682, "users": 943}
    for kind, table in tables.items():
        assert table.schema.equals(contract.SCHEMAS[kind]), kind
    events, items, users = tables["events"], tables["items"], tables["users"]
    assert pc.count_distinct(events["event_id"]).as_py() == 100_000
    assert set(events["event_type"].to_pylist()) == {"view"}
    assert events["price"].null_count == events["quantity"].null_count == 100_000
    # every event points at a known user and item
    assert set(events["user_id"].to_pylist()) == set(users["user_id"].to_pylist())
    assert set(events["item_id"].to_pylist()) <= set(items["item_id"].to_pylist())
    first = events.slice(0, 1).to_pylist()[0]
    day = first["event_timestamp"].strftime("%Y-%m-%d")
    assert first["session_id"] == f"{first['user_id']}-{day}"
    assert first["event_id"] == f"ml-{first['user_id']}-{first['item_id']}"
    toy = items.filter(pc.equal(items["item_id"], "1")).to_pylist()[0]
    assert (toy["title"], toy["category"], toy["brand"], toy["price"]) == (
        "Toy Story", "Animation", "1990s", 1.0)
    assert toy["created_at"].year == 1995
    u1 = users.filter(pc.equal(users["user_id"], "1")).to_pylist()[0]
    u1_events = events.filter(pc.equal(events["user_id"], "1"))
    assert u1["signup_at"] == pc.min(u1_events["event_timestamp"]).as_py()
    assert u1["segment"] == "technician" and u1["country"] is None


def test_movielens_reimport_is_a_noop(ml: tuple[Settings, Path]) -> None:
    s, batch = ml
    before = (batch / "events.parquet").stat().st_mtime_ns
    report = import_movielens(settings=s)
    assert report.skipped and report.path == batch
    assert (batch / "events.parquet").stat().st_mtime_ns == before


def test_movielens_offline_from_a_wheel_on_disk(ml: tuple[Settings, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel already on disk is used before any network access (and extracted into the cache)."""
    wheel = _find_wheel(ml[0])
    assert wheel is not None
    s = Settings(home=tmp_path / "home")
    s.wheel_cache().mkdir(parents=True)
    shutil.copy(wheel, s.wheel_cache() / wheel.name)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(subprocess, "run", no_network)
    report = import_movielens(dataset="ml-offline", settings=s)
    assert report.imported == {"events": 100_000, "items": 1_682, "users": 943}
    assert sorted(p.name for p in s.movielens_cache().iterdir()) == [
        "ml-100k.inter", "ml-100k.item", "ml-100k.user"]


def write_grouplens(d: Path) -> Path:
    """A three-rating sample in the raw GroupLens layout (u.item is ISO-8859-1, pipe-separated)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "u.data").write_text("1\t10\t5\t874965758\n2\t10\t3\t875000000\n1\t20\t1\t876000000\n")
    flags = ["0"] * 19
    crime_drama = flags.copy()
    crime_drama[6] = crime_drama[8] = "1"
    rows = [f"10|Cité des enfants perdus, La (1995)|01-Jan-1995||http://x|{'|'.join(crime_drama)}",
            f"20|unknown|||http://x|{'|'.join(flags)}"]
    (d / "u.item").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return d


def test_movielens_raw_grouplens_files(shoprec_home: Path, tmp_path: Path) -> None:
    report = import_movielens(source=write_grouplens(tmp_path / "ml-100k"))
    assert report.imported == {"events": 3, "items": 2, "users": 2}
    items = {r["item_id"]: r for r in read(report.path, "items").to_pylist()}
    assert items["10"]["title"] == "Cité des enfants perdus, La (1995)"
    assert (items["10"]["category"], items["10"]["brand"]) == ("Crime", "1990s")
    assert items["10"]["created_at"].isoformat() == "1995-01-01T00:00:00+00:00"
    # no genre, no date: category/brand 'unknown', created_at = the movie's first rating
    assert (items["20"]["category"], items["20"]["brand"]) == ("unknown", "unknown")
    assert items["20"]["created_at"].timestamp() == 876000000
    assert report.path.is_relative_to(shoprec_home)


def test_movielens_bad_source_is_a_clear_error(shoprec_home: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="u.data"):
        import_movielens(source=tmp_path)


# ------------------------------------------------------------------------------ generic files

MAP = ["event_id=id", "user_id=uid", "item_id=sku", "event_type=type", "event_timestamp=ts",
       "session_id=session"]
HEADER = "id,uid,sku,type,ts,session,price,quantity\n"
GOOD = (HEADER
        + "e1,007,A,view,2024-01-01T10:00:00Z,s1,,\n"
        + "e2,007,A,purchase,2024-01-01T12:05:00+02:00,s1,9.5,2\n"
        + "e3,008,B,click,2024-01-01T11:00:00Z,s2,,\n")


def landing_is_empty(s: Settings) -> bool:
    zone = s.zone("landing")
    return not zone.exists() or not any(zone.iterdir())


def test_parse_mapping() -> None:
    assert parse_mapping(["event_id=id", " user_id = uid "]) == {"event_id": "id",
                                                                 "user_id": "uid"}
    for bad in (["event_id"], ["=id"], ["event_id="], ["a=b", "a=c"]):
        with pytest.raises(ValueError, match="contract_column=source_column|mapped twice"):
            parse_mapping(bad)


def test_csv_with_mapping(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "shop export.csv"
    f.write_text(GOOD)
    report = import_file(f, mapping=parse_mapping(MAP), settings=settings)
    assert report.imported == {"events": 3} and report.rejected == {"events": 0}
    assert report.dataset == "shop" and report.batch_id.startswith("import-shop_export-")
    assert report.rejected_path is None
    assert sorted(p.name for p in report.path.iterdir()) == ["events.parquet"]
    events = read(report.path, "events")
    assert events.schema.equals(contract.EVENTS)
    rows = events.to_pylist()
    assert rows[0]["user_id"] == "007"  # ids stay text: leading zeros survive
    assert rows[1]["event_timestamp"].isoformat() == "2024-01-01T10:05:00+00:00"  # to UTC
    assert (rows[1]["price"], rows[1]["quantity"]) == (9.5, 2)
    # the same bytes again: a no-op; changed bytes: a new batch
    assert import_file(f, mapping=parse_mapping(MAP), settings=settings).skipped
    f.write_text(GOOD + "e4,009,C,view,2024-01-02T00:00:00Z,s3,,\n")
    again = import_file(f, mapping=parse_mapping(MAP), settings=settings)
    assert not again.skipped and again.batch_id != report.batch_id


def test_duplicates_and_unknown_event_types_are_rejected_and_kept(settings: Settings,
                                                                    tmp_path: Path) -> None:
    f = tmp_path / "noisy.csv"
    f.write_text(GOOD
                 + "e1,999,Z,view,2024-01-03T00:00:00Z,s9,,\n"  # repeats e1: rejected
                 + "e5,008,B,refund,2024-01-03T00:00:00Z,s2,,\n"  # unknown type: rejected
                 + "e5,008,B,view,2024-01-03T00:00:00Z,s2,,\n")  # e5's first valid row: kept
    report = import_file(f, mapping=parse_mapping(MAP), dataset="noisy", settings=settings)
    assert report.imported == {"events": 4} and report.rejected == {"events": 2}
    kept = read(report.path, "events")
    assert kept["event_id"].to_pylist() == ["e1", "e2", "e3", "e5"]
    assert kept["user_id"].to_pylist()[0] == "007"
    assert report.rejected_path == (settings.reports_dir / "imports" / "noisy" /
                                    f"{report.batch_id}_rejected_events.parquet")
    rejected = pq.read_table(report.rejected_path).to_pylist()
    assert [(r["event_id"], r["source_row"]) for r in rejected] == [("e1", 3), ("e5", 4)]
    assert "duplicate event_id" in rejected[0]["reject_reason"]
    assert "event_type" in rejected[1]["reject_reason"]
    assert not list(report.rejected_path.parent.glob(".tmp-*"))


BAD_CSV = {
    "missing column": (HEADER.replace(",session", "") + "e1,007,A,view,2024-01-01T10:00:00Z,,\n",
                       "session_id"),
    "unparseable timestamp": (HEADER + "e1,007,A,view,yesterday,s1,,\n", "event_timestamp"),
    "wrong type": (HEADER + "e1,007,A,view,2024-01-01T10:00:00Z,s1,abc,\n", "price"),
    "null key": (HEADER + ",007,A,view,2024-01-01T10:00:00Z,s1,,\n", "event_id"),
    "empty file": ("", "event_id"),
    "header only": (HEADER, "event_id"),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_file_is_refused_whole(case: str, settings: Settings, tmp_path: Path) -> None:
    text, column = BAD_CSV[case]
    f = tmp_path / f"bad-{case.replace(' ', '_')}.csv"
    f.write_text(text)
    with pytest.raises(ContractError) as err:
        # the missing-column file lacks `session`, so session_id is left to a same-named column
        mapping = MAP[:-1] if case == "missing column" else MAP
        import_file(f, mapping=parse_mapping(mapping), settings=settings)
    assert f.name in str(err.value) and column in str(err.value)
    assert landing_is_empty(settings)


def test_error_names_the_source_column_too(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "ts.csv"
    f.write_text(HEADER + "e1,007,A,view,not-a-time,s1,,\n")
    with pytest.raises(ContractError, match=r"event_timestamp.*source column 'ts'.*e1"):
        import_file(f, mapping=parse_mapping(MAP), settings=settings)
    with pytest.raises(ContractError, match="nope.*session_id"):  # mapped source column absent
        import_file(f, mapping={"session_id": "nope"}, settings=settings)


def test_parquet_items_and_corrupt_parquet(settings: Settings, tmp_path: Path) -> None:
    items = pa.table({"sku": [1, 2, 2], "title": ["a", "b", "b2"], "category": ["c"] * 3,
                      "brand": ["x"] * 3, "price": [1, 2, 3],
                      "created_at": pa.array([0, 1, 2], pa.timestamp("s"))})
    f = tmp_path / "items.parquet"
    pq.write_table(items, f)
    report = import_file(f, kind="items", mapping={"item_id": "sku"}, settings=settings)
    assert report.imported == {"items": 2} and report.rejected == {"items": 1}
    table = read(report.path, "items")
    assert table.schema.equals(contract.ITEMS)
    assert table["item_id"].to_pylist() == ["1", "2"]

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    before = sorted(settings.zone("landing").iterdir())
    with pytest.raises(ContractError, match="broken.parquet.*Parquet"):
        import_file(broken, kind="items", settings=settings)
    assert sorted(settings.zone("landing").iterdir()) == before  # no batch, no .tmp-*


def test_constant_event_type_and_rejected_inputs(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "orders.csv"
    f.write_text("event_id,user_id,item_id,event_timestamp,session_id\n"
                 "o1,u1,i1,1704103200,s1\n")
    report = import_file(f, event_type="purchase", settings=settings)
    row = read(report.path, "events").to_pylist()[0]
    assert row["event_type"] == "purchase"
    assert row["event_timestamp"].isoformat() == "2024-01-01T10:00:00+00:00"  # epoch seconds
    with pytest.raises(ValueError, match="event"):
        import_file(f, event_type="refund", settings=settings)
    with pytest.raises(ValueError, match="not events contract columns"):
        import_file(f, mapping={"rating": "x"}, settings=settings)
    other = tmp_path / "orders.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match=r"orders\.json.*\.csv or \.parquet"):
        import_file(other, settings=settings)


# ------------------------------------------------------------------------------ CLI


def test_cli_imports(shoprec_home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    src = write_grouplens(tmp_path / "ml")
    res = runner.invoke(app, ["data", "import", "movielens", "--source", str(src)])
    assert res.exit_code == 0, res.output
    assert (shoprec_home / "lake" / "ml-100k" / "landing" / BATCH_ID / "users.parquet").is_file()
    res = runner.invoke(app, ["data", "import", "movielens", "--source", str(src)])
    assert res.exit_code == 0 and "already imported" in res.output

    f = tmp_path / "events.csv"
    f.write_text(GOOD)
    args = ["data", "import", "file", str(f), "--dataset", "web", "--batch-id", "day-1"]
    for pair in MAP:
        args += ["--map", pair]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "events 3 imported" in res.output
    assert read(shoprec_home / "lake" / "web" / "landing" / "day-1", "events").num_rows == 3
