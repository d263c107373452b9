"""Importers: MovieLens-100K and CSV/Parquet files → the contract, one landing batch each."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
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
    assert sorted(events["event_seq"].to_pylist()) == list(range(100_000))  # u.data's rows
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


def test_movielens_ties_keep_the_rows_order_of_u_data(shoprec_home: Path, tmp_path: Path) -> None:
    """Ratings in one second keep u.data's order as event_seq (RecBole's), not the item ids'."""
    d = write_grouplens(tmp_path / "ml-100k")
    (d / "u.data").write_text("1\t20\t5\t876000000\n2\t10\t3\t875000000\n"
                              "1\t10\t1\t876000000\n")
    report = import_movielens(source=d)
    events = read(report.path, "events").to_pylist()
    assert [(e["event_id"], e["event_seq"]) for e in events] == [
        ("ml-2-10", 1), ("ml-1-20", 0), ("ml-1-10", 2)]  # by time, ties by row


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
    # batch content only: "_"-prefixed names are sidecars (lake.py), not contract tables
    assert sorted(p.name for p in report.path.iterdir() if not p.name.startswith("_")) == [
        "events.parquet"]
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
    assert kept["event_seq"].to_pylist() == [0, 1, 2, 5]  # the file's rows: ties keep them
    assert kept["user_id"].to_pylist()[0] == "007"
    assert report.rejected_path == (settings.reports_dir / "imports" / "noisy" /
                                    f"{report.batch_id}_rejected_events.parquet")
    rejected = pq.read_table(report.rejected_path).to_pylist()
    assert [(r["event_id"], r["source_row"]) for r in rejected] == [("e1", 3), ("e5", 4)]
    assert "duplicate event_id" in rejected[0]["reject_reason"]
    assert "event_type" in rejected[1]["reject_reason"]
    assert not list(report.rejected_path.parent.glob(".tmp-*"))


def test_a_files_own_event_seq_is_kept(settings: Settings, tmp_path: Path) -> None:
    """A log offset mapped to event_seq orders ties instead of the row numbers."""
    f = tmp_path / "offsets.csv"
    f.write_text("id,uid,sku,type,ts,offset\n"
                 "e1,u1,A,view,2024-01-01T10:00:00Z,7\n"
                 "e2,u1,B,view,2024-01-01T10:00:00Z,3\n")
    report = import_file(f, mapping=parse_mapping(
        ["event_id=id", "user_id=uid", "item_id=sku", "event_type=type", "event_timestamp=ts",
         "event_seq=offset"]), settings=settings)
    assert read(report.path, "events")["event_seq"].to_pylist() == [7, 3]


BAD_CSV = {
    "missing column": (HEADER.replace(",type", "") + "e1,007,A,2024-01-01T10:00:00Z,s1,,\n",
                       "event_type"),
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
        # the missing-column file lacks `type`, so event_type is left to a same-named column
        mapping = [m for m in MAP if m != "event_type=type"] if case == "missing column" else MAP
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
    with pytest.raises(ValueError, match=r"orders\.json.*\.csv, \.tsv or \.parquet"):
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


# ------------------------------------------------------------------------------ epoch units

TEN_AM = 1704103200  # 2024-01-01T10:00:00Z in epoch seconds


def epoch_csv(f: Path, values: list[str]) -> Path:
    rows = "".join(f"e{i},u1,i1,view,{v},s1\n" for i, v in enumerate(values))
    f.write_text("event_id,user_id,item_id,event_type,ts,session_id\n" + rows)
    return f


@pytest.mark.parametrize("unit,scale", [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_epoch_unit_is_detected_from_the_magnitude(unit: str, scale: int, settings: Settings,
                                                   tmp_path: Path) -> None:
    f = epoch_csv(tmp_path / f"epoch-{unit}.csv", [str(TEN_AM * scale), str((TEN_AM + 1) * scale)])
    report = import_file(f, mapping={"event_timestamp": "ts"}, settings=settings)
    stamps = [t.isoformat() for t in read(report.path, "events")["event_timestamp"].to_pylist()]
    assert stamps == ["2024-01-01T10:00:00+00:00", "2024-01-01T10:00:01+00:00"]
    assert report.time_units == {"event_timestamp": f"{unit} (detected)"}
    assert f"epoch unit of event_timestamp: {unit} (detected)" in report.summary()


def test_epoch_ms_floats_and_parquet_microseconds(settings: Settings, tmp_path: Path) -> None:
    f = epoch_csv(tmp_path / "float-ms.csv", [f"{TEN_AM * 1000 + 250}.0"])  # pandas-style float
    row = read(import_file(f, mapping={"event_timestamp": "ts"}, settings=settings).path,
               "events").to_pylist()[0]
    assert row["event_timestamp"].isoformat() == "2024-01-01T10:00:00.250000+00:00"
    users = pa.table({"user_id": ["u1"], "signup_at": pa.array([TEN_AM * 10**6 + 7], pa.int64())})
    pq.write_table(users, p := tmp_path / "users-us.parquet")
    report = import_file(p, kind="users", settings=settings)
    assert report.time_units == {"signup_at": "us (detected)"}
    signup = read(report.path, "users")["signup_at"][0].as_py()
    assert signup.isoformat() == "2024-01-01T10:00:00.000007+00:00"  # exact to the microsecond


def test_explicit_time_unit_overrides_detection(settings: Settings, tmp_path: Path) -> None:
    # a catalogue of old films in epoch seconds: 1965 is outside detection, the option says "s"
    f = tmp_path / "old-items.csv"
    f.write_text("item_id,title,category,brand,price,created_at\ni1,Help!,film,1960s,1,-157766400\n")
    with pytest.raises(ContractError, match="created_at.*--time-unit"):
        import_file(f, kind="items", settings=settings)
    report = import_file(f, kind="items", time_unit="s", settings=settings)
    assert report.time_units == {"created_at": "s (given)"}
    created = read(report.path, "items")["created_at"][0].as_py()
    assert created.isoformat() == "1965-01-01T00:00:00+00:00"
    # the given unit wins even where detection would pick another
    g = epoch_csv(tmp_path / "forced.csv", [str(TEN_AM)])
    report = import_file(g, mapping={"event_timestamp": "ts"}, time_unit="ms", settings=settings)
    stamp = read(report.path, "events")["event_timestamp"][0].as_py()
    assert stamp.isoformat() == "1970-01-20T17:21:43.200000+00:00"
    with pytest.raises(ContractError, match="--time-unit 'days'"):
        import_file(g, time_unit="days", settings=settings)


@pytest.mark.parametrize("values,found", [
    (["20240101", "20240102"], r"row 0: 20240101\)"),  # YYYYMMDD digits: no unit fits
    ([str(TEN_AM), str(TEN_AM * 1000)], r"row 1: 1704103200000, while row 0 reads as 's'"),
])
def test_implausible_epoch_numbers_are_refused(values: list[str], found: str,
                                               settings: Settings, tmp_path: Path) -> None:
    f = epoch_csv(tmp_path / "implausible.csv", values)
    with pytest.raises(ContractError) as err:
        import_file(f, mapping={"event_timestamp": "ts"}, settings=settings)
    msg = str(err.value)
    assert msg.startswith(f"{f}, column 'event_timestamp'") and "source column 'ts'" in msg
    assert re.search(found, msg) and "1990..2100" in msg and "sample row" in msg
    assert landing_is_empty(settings)


# ------------------------------------------------------------------------------ dropped columns


def test_source_columns_left_out_of_the_contract_are_reported(settings: Settings,
                                                              tmp_path: Path) -> None:
    f = tmp_path / "extra.csv"
    f.write_text("id,event_id,uid,sku,type,ts,session,coupon,note\n"
                 "e1,legacy-1,u1,A,view,2024-01-01T10:00:00Z,s1,SAVE10,hi\n")
    report = import_file(f, mapping=parse_mapping(MAP), settings=settings)
    # `event_id` lost to the mapping event_id=id: its values are not imported either
    assert report.dropped_columns == ["event_id", "coupon", "note"]
    assert "dropped columns not in the contract: ['event_id', 'coupon', 'note']" in \
        report.summary()
    g = tmp_path / "exact.csv"
    g.write_text(GOOD)
    assert import_file(g, mapping=parse_mapping(MAP), settings=settings).dropped_columns == []


# ------------------------------------------------------------------------------ delimiter, encoding


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_delimiter_is_detected(sep: str, settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "semi.csv"
    f.write_text(GOOD.replace(",", sep))
    report = import_file(f, mapping=parse_mapping(MAP), settings=settings)
    assert report.imported == {"events": 3}
    assert f"delimiter {sep!r} (detected)" in report.summary()
    rows = read(report.path, "events").to_pylist()
    assert (rows[1]["user_id"], rows[1]["price"], rows[1]["quantity"]) == ("007", 9.5, 2)


ITEMS_CSV = "item_id;title;category;brand;price;created_at\n" \
            "i1;Café crème;Boissons;Dürr;2.5;2024-01-01T00:00:00Z\n"


def test_latin1_is_detected_and_named(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "latin1.csv"
    f.write_bytes(ITEMS_CSV.encode("latin-1"))
    report = import_file(f, kind="items", settings=settings)
    row = read(report.path, "items").to_pylist()[0]
    assert (row["title"], row["brand"], row["price"]) == ("Café crème", "Dürr", 2.5)
    assert "read as cp1252: could not decode as utf-8 at byte" in report.summary()
    again = import_file(f, kind="items", encoding="latin-1", batch_id="given", settings=settings)
    assert not any("utf-8" in n for n in again.notes)  # a given encoding is no guess
    assert read(again.path, "items")["title"][0].as_py() == "Café crème"


def test_unreadable_text_names_the_cause(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "latin1.csv"
    f.write_bytes(ITEMS_CSV.encode("latin-1"))
    at = ITEMS_CSV.encode("utf-8").index("é".encode())
    with pytest.raises(ContractError, match=rf"latin1\.csv: could not decode as utf-8 at byte "
                       rf"{at} \(line 2.*pass the file's encoding, e.g. --encoding latin-1"):
        import_file(f, kind="items", encoding="utf-8", settings=settings)
    g = tmp_path / "utf16.csv"  # UTF-16 without a byte-order mark: NUL bytes everywhere
    g.write_bytes(ITEMS_CSV.encode("utf-16-le"))
    with pytest.raises(ContractError, match="could not decode as utf-8 at byte .*NUL bytes"):
        import_file(g, kind="items", settings=settings)
    assert import_file(g, kind="items", encoding="utf-16-le", delimiter=";",
                       settings=settings).imported == {"items": 1}
    with pytest.raises(ContractError, match=r"only one column found with delimiter ','.*"
                       r"the header looks ';'-delimited: pass --delimiter ';'"):
        import_file(f, kind="items", delimiter=",", settings=settings)
    h = tmp_path / "spaces.csv"
    h.write_text("item_id title category\ni1 a b\n")
    with pytest.raises(ContractError, match="only one column.*pass --delimiter"):
        import_file(h, kind="items", settings=settings)
    with pytest.raises(ContractError, match="unknown encoding"):
        import_file(f, kind="items", encoding="klingon", settings=settings)


# ------------------------------------------------------------------------------ length limits


def test_over_long_values_are_refused_by_conform() -> None:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ok_id, long_id = "u" * contract.MAX_ID_LENGTH, "u" * (contract.MAX_ID_LENGTH + 1)
    users = pa.table({"user_id": ["a", ok_id], "signup_at": [now, now]})
    assert contract.conform(users, "users", "users.csv").num_rows == 2  # the limit itself fits
    with pytest.raises(ContractError) as err:
        contract.conform(pa.table({"user_id": ["a", long_id], "signup_at": [now, now]}),
                         "users", "users.csv")
    assert err.value.column == "user_id" and "max length" in err.value.rule
    assert f"{contract.MAX_ID_LENGTH + 1:,} characters" in str(err.value) and "row 1" in str(
        err.value)
    items = pa.table({"item_id": ["i1"], "title": ["x" * 1_000_000], "category": ["c"],
                      "brand": ["b"], "price": [1.0], "created_at": [now]})
    with pytest.raises(ContractError) as err:
        contract.conform(items, "items", "items.csv")
    msg = str(err.value)
    assert msg.startswith("items.csv, column 'title': max length: 1,000,000 characters")
    assert f"at most {contract.MAX_TEXT_LENGTH:,}" in msg
    assert len(msg) < 400 and "(1,000,000 chars)" in msg  # the sample row is clipped
    assert set(contract.MAX_LENGTH) == {
        "event_id", "user_id", "item_id", "session_id", "event_type", "title", "category",
        "brand", "country", "segment"}


def test_over_long_value_in_a_file_is_refused_whole(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "long.csv"
    f.write_text(GOOD + f"e4,007,{'A' * 300},view,2024-01-01T10:00:00Z,s1,,\n")
    with pytest.raises(ContractError, match=r"long\.csv, column 'item_id': max length: 300 "
                       r"characters.*\(row 3\).*source column 'sku'"):
        import_file(f, mapping=parse_mapping(MAP), settings=settings)
    assert landing_is_empty(settings)


def test_a_megabyte_string_is_quarantined_by_the_gate(settings: Settings) -> None:
    from shoprec.lake import write_batch
    from shoprec.simulate import simulate
    from shoprec.validation import validate

    simulate("tiny", seed=5, days=1, settings=settings)
    (day,) = settings.zone("landing").iterdir()
    tables = {f.stem: pq.read_table(f) for f in day.glob("*.parquet")}
    shutil.rmtree(day)
    items = tables["items"]
    titles = items["title"].to_pylist()
    titles[0] = "x" * 1_000_000
    tables["items"] = items.set_column(items.schema.get_field_index("title"), "title",
                                       pa.array(titles, pa.string()))
    write_batch("huge-title", tables, settings=settings)
    (r,) = validate(settings=settings, workers=1)
    assert r.status == "quarantined"
    (fail,) = r.failures
    assert (fail.table, fail.column, fail.rule) == ("items", "title",
                                                    "unexpected_rows_expectation")
    line = fail.line()
    assert "column 'title'" in line and f"at most {contract.MAX_TEXT_LENGTH:,}" in line
    assert "1000000 chars" in line and len(line) < 500  # names the row, does not quote it


# ------------------------------------------------------------------------------ CLI options


def test_cli_file_options_and_one_line_errors(shoprec_home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from shoprec.cli import main

    f = epoch_csv(tmp_path / "semi.csv", [str(TEN_AM)])
    f.write_text(f.read_text().replace(",", ";"))
    res = CliRunner().invoke(app, ["data", "import", "file", str(f), "--map", "event_timestamp=ts",
                                   "--delimiter", ";", "--time-unit", "s", "--encoding", "utf-8"],
                             terminal_width=300)
    assert res.exit_code == 0, res.output
    assert "epoch unit of event_timestamp: s (given)" in " ".join(res.output.split())
    for args, expected in (
            (["--delimiter", ","], "pass --delimiter ';'"),
            (["--time-unit", "fortnights"], "--time-unit 'fortnights'"),
            (["--kind", "orders"], "unknown kind 'orders'")):
        monkeypatch.setattr(sys, "argv", ["shoprec", "data", "import", "file", str(f),
                                          "--batch-id", "other", *args])
        with pytest.raises(SystemExit) as ex:
            main()
        out = capsys.readouterr().err
        assert ex.value.code == 2 and expected in " ".join(out.split()), out
        assert out.count("\n") == 1 and out.startswith(f"error: {f}"), out


# ------------------------------------------------------------------ deliveries of several tables

def _delivery(folder: Path) -> Path:
    folder.mkdir()
    (folder / "orders.csv").write_text("order_line;customer;sku;ts\n"
                                       "o1;c1;p1;1717200000000\no2;c2;p2;1717203600000\n")
    (folder / "items.csv").write_text("item_id,title\np1,Tea\np2,Soap\n")
    (folder / "users.csv").write_text("user_id,country\nc1,DE\nc2,FR\n")
    return folder


def test_a_delivery_folder_lands_as_one_batch(settings: Settings, tmp_path: Path) -> None:
    from shoprec.importers.tabular import import_dir

    folder = _delivery(tmp_path / "export")
    with pytest.raises(ContractError, match=r"orders.csv: which table is this file\?"):
        import_dir(folder, settings=settings)
    assert not settings.zone("landing").exists()  # nothing landed before every file was read
    mappings = {"events": {"event_id": "order_line", "user_id": "customer", "item_id": "sku",
                           "event_timestamp": "ts"}}
    report = import_dir(folder, mappings=mappings, kinds={"orders.csv": "events"},
                        event_type="purchase", settings=settings)
    assert report.imported == {"events": 2, "items": 2, "users": 2}
    batch = report.path
    assert sorted(p.name for p in batch.glob("*.parquet")) == [
        "events.parquet", "items.parquet", "users.parquet"]
    assert read(batch, "events")["event_type"].to_pylist() == ["purchase", "purchase"]
    assert read(batch, "items")["price"].null_count == 2  # optional columns arrive as nulls
    again = import_dir(folder, mappings=mappings, kinds={"orders.csv": "events"},
                       event_type="purchase", settings=settings)
    assert again.skipped and "already in" in again.summary()


def test_tables_of_one_delivery_join_its_batch(settings: Settings, tmp_path: Path) -> None:
    folder = _delivery(tmp_path / "export")
    first = import_file(folder / "items.csv", kind="items", batch_id="d1", settings=settings)
    second = import_file(folder / "users.csv", kind="users", batch_id="d1", settings=settings)
    assert second.path == first.path and "now holds items, users" in second.summary()
    assert sorted(p.name for p in first.path.glob("*.parquet")) == [
        "items.parquet", "users.parquet"]
    assert not list(first.path.parent.glob(".tmp-*"))
    assert not settings.zone("quarantine").exists()  # joining is not superseding
    # the same file again under the same id: nothing to do, and the summary says where it is
    third = import_file(folder / "users.csv", kind="users", batch_id="d1", settings=settings)
    assert third.skipped and str(first.path) in third.summary()


def test_cli_import_dir_one_line_errors(shoprec_home: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from shoprec.cli import main

    folder = _delivery(tmp_path / "export")
    base = ["shoprec", "data", "import", "dir", str(folder), "--kind", "orders.csv=events"]
    for args, expected in ((["--map", "event_id=order_line"], "name the table: kind."),
                           ([], "missing required column(s)"),
                           (["--kind", "x.csv=items"], "--kind names ['x.csv']")):
        monkeypatch.setattr(sys, "argv", [*base, *args])
        with pytest.raises(SystemExit) as ex:
            main()
        out = capsys.readouterr().err
        assert ex.value.code == 2 and expected in " ".join(out.split()), out
        assert out.count("\n") == 1, out
    res = CliRunner().invoke(app, [*base[1:], "--map", "events.event_id=order_line", "--map",
                                   "events.user_id=customer", "--map", "events.item_id=sku",
                                   "--map", "events.event_timestamp=ts", "--event-type",
                                   "purchase"], terminal_width=300)
    assert res.exit_code == 0, res.output
    assert "events 2 imported" in res.output and "delimiter ';' (detected)" in res.output


# ------------------------------------------------------------ what a new user's export brought

def test_a_list_of_ids_is_a_catalogue(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "skus.csv"
    f.write_text("sku\ni1\ni2\n")
    report = import_file(f, kind="items", mapping={"item_id": "sku", "title": "sku"},
                         settings=settings)  # one source column feeds two contract columns
    items = read(report.path, "items")
    assert items["item_id"].to_pylist() == items["title"].to_pylist() == ["i1", "i2"]
    with pytest.raises(ContractError, match="only one column found"):  # events need several
        import_file(f, kind="events", settings=settings)


def test_event_names_are_mapped_and_rejections_explained(settings: Settings,
                                                        tmp_path: Path) -> None:
    f = tmp_path / "clicks.csv"
    f.write_text("event_id,user_id,item_id,event_type,event_timestamp\n"
                 + "".join(f"e{n},u1,i1,{t},2026-01-01T10:00:0{n}Z\n"
                           for n, t in enumerate(["pageview", "pageview", "basket", "order",
                                                  "wishlist", "view"])))
    report = import_file(f, event_map={"pageview": "view", "basket": "add_to_cart"},
                         settings=settings)
    assert report.imported == {"events": 4} and report.rejected == {"events": 2}
    assert read(report.path, "events")["event_type"].to_pylist() == [
        "view", "view", "add_to_cart", "view"]
    text = report.summary()
    assert "2 event_type not in" in text and "'order' 1, 'wishlist' 1" in text
    assert "--event-map order=view|click|add_to_cart|purchase" in text
    with pytest.raises(ContractError, match=r"--event-map maps to \['sale'\]"):
        import_file(f, event_map={"order": "sale"}, settings=settings)


def test_nanosecond_parquet_timestamps_are_floored(settings: Settings, tmp_path: Path) -> None:
    import pandas as pd

    f = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["a"], "created_at": pa.array(
        pd.to_datetime(["2024-01-01T00:00:00.123456789Z"]))}), f)
    report = import_file(f, kind="items", settings=settings)
    assert read(report.path, "items")["created_at"][0].as_py() == dt.datetime(
        2024, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC)


def test_a_folder_given_to_import_file_points_at_import_dir(settings: Settings,
                                                           tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="shoprec data import dir"):
        import_file(tmp_path, settings=settings)
