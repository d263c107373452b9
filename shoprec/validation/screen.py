"""Screen every pending batch at once: one Great Expectations run per table over per-batch rule
metrics, so that only the batches it flags pay for a run of their own.

Why: a GX run costs ~0.3 s of Python whatever the data, and the suites need three per batch, so
90 daily batches cost a minute while DuckDB answers every rule for all of them in seconds. Here
the rules of suites.py are measured for all batches in a few grouped passes (the union of the
batches' files, each row tagged with its file) into one metrics table per table kind, one row
per batch; a GX suite of column expectations, one per rule, names the offending batches
(`unexpected_index_column_names`). The screen errs one way only: a batch it cannot vouch for
(odd structure, an unreadable file, a rule that raised, a hash collision) is flagged, and a
flagged batch is judged alone by the full suites, whose verdict and report are the same as
without the screen.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from shoprec import contract
from shoprec.config import Settings
from shoprec.lake import TABLES, content_hash, iter_files, position
from shoprec.names import sql_literal
from shoprec.validation.failures import exception_messages
from shoprec.validation.judge import Verdict
from shoprec.validation.suites import _DUCK_TYPE, _TIME_COLUMN, duck_type, sessions_sql

log = logging.getLogger(__name__)

RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["batch"]}
_FIRST = -(2**63)  # "known before any pending batch": validated or held ids


@dataclass
class Screened:
    """What the screen found: verdicts for the batches it vouches for; the rest need judging."""

    passed: list[Verdict] = field(default_factory=list)
    flagged: list[Path] = field(default_factory=list)


@dataclass
class _Batch:
    path: Path
    arrival: int
    files: dict[str, str] = field(default_factory=dict)  # kind → file path as DuckDB reports it
    columns: set[str] = field(default_factory=set)  # every column any of its files has


def screen_batches(dirs: list[Path], settings: Settings, known: Path) -> Screened:
    """Verdicts for the batches every rule passes on; the others, flagged, in `dirs` order."""
    from shoprec.validation.gx_session import GxSession

    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="shoprec-screen-"))
    gxs = GxSession(settings, workdir, workers=1)
    try:
        batches, flagged = _candidates(gxs, dirs)
        _load_known(gxs, known)
        rows: dict[str, dict[str, int]] = {b.path.name: {} for b in batches}
        for kind in TABLES:
            mine = [b for b in batches if kind in b.files]
            if not mine:
                continue
            try:
                bad = _screen_kind(gxs, kind, mine, rows)
            except Exception as e:  # noqa: BLE001 - the screen never decides a failure
                log.warning("screen of %s failed, judging its batches one by one: %s", kind,
                            str(e).splitlines()[0][:300])
                bad = {b.path.name for b in mine}
            flagged |= bad
        ok = [b for b in batches if b.path.name not in flagged]
        deps = _dependencies(gxs, [b for b in ok if "events" in b.files], known)
    finally:
        gxs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    each = (time.perf_counter() - t0) / max(1, len(dirs))
    passed = [Verdict(b.path, content_hash(b.path), [], rows[b.path.name], {}, each,
                      needs=deps.get(b.path.name, ({}, {}))[0],
                      held=deps.get(b.path.name, ({}, {}))[1]) for b in ok]
    return Screened(passed, [d for d in dirs if d.name in flagged])


def _candidates(gxs, dirs: list[Path]) -> tuple[list[_Batch], set[str]]:
    """Batches whose every file has exactly the contract's columns and DuckDB types (optional
    columns may be absent); anything else goes to the full suites."""
    names = {f"{t}.parquet" for t in TABLES}
    out, flagged = [], set()
    for d in dirs:
        b = _Batch(d, position(d))
        files = [p.name for p in iter_files(d)]
        ok = bool(files) and set(files) <= names
        for kind in TABLES:
            f = d / f"{kind}.parquet"
            if ok and f.is_file():
                cols = _exact_structure(gxs, f, kind)
                ok = cols is not None
                b.files[kind], b.columns = str(f), b.columns | (cols or set())
        if ok:
            out.append(b)
        else:
            flagged.add(d.name)
    return out, flagged


def _exact_structure(gxs, f: Path, kind: str) -> set[str] | None:
    """The file's columns when they are the contract's with its exact types, else None."""
    try:
        cols = {str(r[0]): str(r[1]) for r in
                gxs.sql(f"DESCRIBE SELECT * FROM read_parquet({sql_literal(f)})")}
    except Exception:  # noqa: BLE001 - unreadable: the full suites say so
        return None
    schema = contract.SCHEMAS[kind]
    exact = set(cols) <= set(schema.names) and all(
        cols.get(c.name) == _DUCK_TYPE[str(c.type)] if c.name in cols else c.nullable
        for c in schema)
    return set(cols) if exact else None


def _load_known(gxs, known: Path) -> None:
    """known_first: per id, the earliest arrival at which it exists for a batch (validated and
    held ids always; a pending batch's ids from its arrival on), as suites' known views have it."""
    gxs.sql(f"""CREATE OR REPLACE TABLE known_first AS
        SELECT kind, id, min(CASE WHEN state = 'pending' THEN arrival ELSE {_FIRST} END) AS first
        FROM read_parquet({sql_literal(known)}) GROUP BY kind, id""")


def _union_view(gxs, kind: str, batches: list[_Batch]) -> None:
    """u_<kind>: every batch's rows in contract columns (absent optional ones as typed nulls)
    and `_file`, its file's number; f_<kind>: each number's batch and arrival."""
    files = [b.files[kind] for b in batches]
    present = set().union(*(b.columns for b in batches))
    cols = ", ".join(f'u."{c.name}"' if c.name in present
                     else f'CAST(NULL AS {duck_type(c)}) AS "{c.name}"'
                     for c in contract.SCHEMAS[kind])
    values = ", ".join(f"({i}, {sql_literal(b.path.name)}, {int(b.arrival)})"
                       for i, b in enumerate(batches))
    gxs.sql(f"CREATE OR REPLACE TABLE f_{kind} (_file BIGINT, batch VARCHAR, _arrival BIGINT)")
    gxs.sql(f"INSERT INTO f_{kind} VALUES {values}")
    listed = "[" + ", ".join(sql_literal(f) for f in files) + "]"
    # file_index: the file's place in the list, an integer to group and hash on, not a path
    gxs.sql(f"""CREATE OR REPLACE VIEW u_{kind} AS
        SELECT {cols}, u.file_index AS _file
        FROM read_parquet({listed}, union_by_name = true) AS u""")


def _screen_kind(gxs, kind: str, batches: list[_Batch], rows: dict) -> set[str]:
    """Flagged batch names of one table kind; fills `rows` with the others' row counts."""
    v = gxs.settings.validation
    _union_view(gxs, kind, batches)
    metrics = _metrics(kind, v, gxs.settings.session_gap_minutes)
    selects = ", ".join(f"coalesce(m{i}.{col}, 0) AS {col}" if not rate else f"m{i}.{col}"
                        for i, (sql, cols) in enumerate(metrics) for col, rate in cols)
    joins = " ".join(f"LEFT JOIN ({sql}) AS m{i} ON m{i}._file = f._file"
                     for i, (sql, _) in enumerate(metrics))
    gxs.sql(f"CREATE OR REPLACE TABLE m_{kind} AS SELECT f.batch, {selects} "
            f"FROM f_{kind} AS f {joins}")
    suite = gxs.context.suites.add(_suite(gxs.gx, kind, metrics, v))
    result = gxs.run_suite(f"m_{kind}", suite, RESULT_FORMAT)
    flagged: set[str] = set()
    for r in result.results:
        if exception_messages(r):
            return {b.path.name for b in batches}
        if not r.success:
            found = [x["batch"] for x in (r.result or {}).get("unexpected_index_list") or []]
            if not found:  # failed without naming a batch: trust none of them
                return {b.path.name for b in batches}
            flagged |= set(found)
    for batch, n in gxs.sql(f"SELECT batch, n_rows FROM m_{kind}"):
        rows[batch][kind] = int(n)
    return flagged


def _metrics(kind: str, v, gap: int) -> list[tuple[str, list[tuple[str, bool]]]]:
    """(query grouped by _file, [(metric column, is a rate)]) for every rule of the suites that
    `v.skip_rules` leaves on. Counts must be 0; rates at most their threshold; n_rows ≥ 1."""
    schema = contract.SCHEMAS[kind]
    key = contract.KEYS[kind]
    now = dt.datetime.now(dt.UTC)
    latest = now + dt.timedelta(minutes=v.future_slack_minutes)
    simple = [("n_rows", "count(*)")]
    simple += [(f"null_{f.name}", f'count(*) - count("{f.name}")')
               for f in schema if not f.nullable]
    simple += [(f"long_{c}", f'count(*) FILTER (WHERE length("{c}") > {n})')
               for c, n in contract.MAX_LENGTH.items() if c in schema.names]
    if kind == "events":
        types = ", ".join(sql_literal(t) for t in contract.EVENT_TYPES)
        simple.append(("bad_event_type", f"count(*) FILTER (WHERE event_type NOT IN ({types}))"))
    on = ["time_range"] + ["price_range"] * ("price" in schema.names) + [
        "quantity_range"] * (kind == "events")
    ts = _TIME_COLUMN[kind]
    lo = "" if kind == "items" else f"{ts} < {_ts(v.min_timestamp)} OR "
    ranges = {"time_range": f"{lo}{ts} > {_ts(latest)}",
              "price_range": f"price < 0 OR price > {float(v.price_ceiling)!r} OR isnan(price)",
              "quantity_range": f"quantity < 1 OR quantity > {int(v.max_quantity)}"}
    simple += [(r, f"count(*) FILTER (WHERE {ranges[r]})") for r in on if r not in v.skip_rules]
    out = [(f"SELECT _file, {', '.join(f'{e} AS {c}' for c, e in simple)} FROM u_{kind} "
            "GROUP BY _file", [(c, False) for c, _ in simple])]
    # duplicate keys (hash collisions flag both files: the full suite decides)
    out.append((f"""SELECT _file, c AS key_dups FROM ({_collide(
                       kind, f'hash(_file, "{key}")', f'"{key}" IS NOT NULL')}) AS d""",
                [("key_dups", False)]))
    if kind == "events":
        for ref in ("item", "user"):
            if f"unknown_{ref}s" not in v.skip_rules:
                out.append(_unknown(ref))
        if "duplicates" not in v.skip_rules:
            out.append(_duplicates())
        if "funnel" not in v.skip_rules:
            out.append(_funnel(gap))
    return out


def _ts(value: dt.datetime) -> str:
    return f"CAST({sql_literal(value.isoformat())} AS TIMESTAMPTZ)"


def _collide(kind: str, key: str, where: str = "true") -> str:
    """(_file, c): per file, how many rows share a `key` (a hash including _file) with another
    row and how many distinct such keys. A hash collision only adds rows: flagged, not passed."""
    return f"""WITH g AS (SELECT {key} AS h FROM u_{kind} WHERE {where} GROUP BY h
                         HAVING count(*) > 1)
               SELECT _file, count(*) AS c, count(DISTINCT {key}) AS k FROM u_{kind}
               WHERE {where} AND {key} IN (SELECT h FROM g) GROUP BY _file"""


def _unknown(ref: str) -> tuple[str, list[tuple[str, bool]]]:
    col, kind = f"{ref}_id", f"{ref}s"
    return (f"""SELECT e._file, CASE WHEN count(*) > 0 AND any_value(f._arrival) >= (
                       SELECT min(first) FROM known_first WHERE kind = '{kind}')
                     THEN count(*) FILTER (WHERE k.first IS NULL OR k.first > f._arrival)
                          / count(*) END AS unknown_{kind}
                FROM u_events AS e JOIN f_events AS f ON f._file = e._file
                LEFT JOIN known_first AS k ON k.kind = '{kind}' AND k.id = e.{col}
                WHERE e.{col} IS NOT NULL GROUP BY e._file""", [(f"unknown_{kind}", True)])


def _duplicates() -> tuple[str, list[tuple[str, bool]]]:
    # same (user, item, type, timestamp) under another event_id; a collision only adds
    groups = _collide("events", "hash(_file, user_id, item_id, event_type, event_timestamp)")
    return (f"""SELECT _file, (c - k) / n AS duplicates FROM ({groups}) AS d
               JOIN (SELECT _file, count(*) AS n FROM u_events GROUP BY _file) USING (_file)""",
            [("duplicates", True)])


def _funnel(gap: int) -> tuple[str, list[tuple[str, bool]]]:
    """suites._funnel per file. Given sessions are read straight from the files (purchases,
    then only the views of a purchased item in its session); derived ones need a window over
    the user's events, which runs only for (file, user) pairs with an event lacking a
    session_id (usually none)."""
    derived = sessions_sql("(SELECT * FROM u_events SEMI JOIN (SELECT DISTINCT _file, user_id "
                           "FROM u_events WHERE session_id IS NULL) USING (_file, user_id))",
                           gap, by="_file, user_id")
    return (f"""WITH d AS (SELECT _file, s_key, s_n, item_id, event_type, event_timestamp
                          FROM ({derived}) AS d
                          WHERE derived AND event_type IN ('view', 'purchase')),
               p AS (SELECT _file, false AS derived, session_id AS s_key, 0 AS s_n, item_id,
                            event_timestamp FROM u_events
                     WHERE event_type = 'purchase' AND session_id IS NOT NULL
                     UNION ALL SELECT _file, true, s_key, s_n, item_id, event_timestamp FROM d
                     WHERE event_type = 'purchase'),
               v AS (SELECT e._file, false AS derived, e.session_id AS s_key, 0 AS s_n,
                            e.item_id, min(e.event_timestamp) AS first_view
                     FROM u_events AS e SEMI JOIN p ON NOT p.derived AND p._file = e._file
                          AND p.s_key = e.session_id AND p.item_id = e.item_id
                     WHERE e.event_type = 'view' GROUP BY ALL
                     UNION ALL SELECT _file, true, s_key, s_n, item_id, min(event_timestamp)
                     FROM d WHERE event_type = 'view' GROUP BY ALL)
               SELECT p._file, count(*) FILTER (WHERE v.item_id IS NULL) / count(*) AS funnel
               FROM p LEFT JOIN v ON v._file = p._file AND v.derived = p.derived
                    AND v.s_key = p.s_key AND v.s_n = p.s_n AND v.item_id = p.item_id
                    AND v.first_view <= p.event_timestamp
               GROUP BY p._file""", [("funnel", True)])


def _suite(gx, kind: str, metrics: list, v):
    """One column expectation per metric: GX names the batches it fails on."""
    import great_expectations.expectations as gxe

    limits = {"unknown_items": v.max_unknown_item_rate, "unknown_users": v.max_unknown_user_rate,
              "duplicates": v.max_duplicate_rate, "funnel": v.max_funnel_violation_rate}
    suite = gx.ExpectationSuite(name=f"screen_{kind}")
    for _, cols in metrics:
        for col, rate in cols:
            if col == "n_rows":
                e = gxe.ExpectColumnValuesToBeBetween(column=col, min_value=1)
            else:
                e = gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=0, max_value=limits[col] if rate else 0)
            suite.add_expectation(e)
    return suite


def _dependencies(gxs, batches: list[_Batch], known: Path) -> dict[str, tuple[dict, dict]]:
    """judge._dependencies for every screened events file at once: per batch, (pending batch →
    events needing it, quarantined batch → events needing it)."""
    skip = gxs.settings.validation.skip_rules
    refs = [(k, c) for k, c in (("items", "item_id"), ("users", "user_id"))
            if f"unknown_{k}" not in skip]
    if not batches or not refs:
        return {}
    gxs.sql(f"""CREATE OR REPLACE TABLE id_src AS
        SELECT kind, id, bool_or(state = 'validated') AS val,
               arg_min(batch, arrival) FILTER (WHERE state = 'pending') AS p_src,
               min(arrival) FILTER (WHERE state = 'pending') AS p_arr,
               min(batch) FILTER (WHERE state = 'held') AS h_src
        FROM read_parquet({sql_literal(known)}) GROUP BY kind, id
        HAVING NOT bool_or(state = 'validated')""")
    gxs.sql(f"""CREATE OR REPLACE TABLE own_ids AS
        SELECT DISTINCT kind, id, batch FROM read_parquet({sql_literal(known)})
        WHERE state = 'pending'""")
    names = ", ".join(sql_literal(b.path.name) for b in batches)
    sides = [_dep_side(kind, col) for kind, col in refs]
    pairs = ", ".join(f"{k[0]}_state, {k[0]}_src" for k, _ in refs)
    combos = gxs.sql(f"""
        SELECT batch, {pairs}, count(*) FROM (
            SELECT f.batch, {', '.join(c for _, c in sides)}
            FROM u_events AS e JOIN f_events AS f ON f._file = e._file
            {' '.join(j for j, _ in sides)}
            WHERE f.batch IN ({names})) AS d
        WHERE {' OR '.join(f'{k[0]}_src IS NOT NULL' for k, _ in refs)} GROUP BY ALL""")
    out: dict[str, tuple[dict, dict]] = {}
    for batch, *found, n in combos:
        # an event needing one batch for its item and its user counts once (judge's UNION)
        for state, src in dict.fromkeys(zip(found[::2], found[1::2], strict=True)):
            if src is not None:
                needs, held = out.setdefault(batch, ({}, {}))
                side = needs if state == "pending" else held
                side[src] = side.get(src, 0) + int(n)
    return out


def _dep_side(kind: str, col: str) -> tuple[str, str]:
    """(joins, columns) giving each event's (state, source batch) for its `col`: none when the
    id is validated, unknown, or brought by the event's own batch; the first pending batch
    that arrived up to it, else the quarantined one holding it."""
    p = kind[0]
    joins = f"""LEFT JOIN id_src AS s{p} ON s{p}.kind = '{kind}' AND s{p}.id = e.{col}
        LEFT JOIN own_ids AS o{p} ON o{p}.kind = '{kind}' AND o{p}.id = e.{col}
                                 AND o{p}.batch = f.batch"""
    none = f"o{p}.id IS NOT NULL OR s{p}.id IS NULL"
    pending = f"s{p}.p_arr <= f._arrival"
    cols = f"""CASE WHEN {none} THEN NULL WHEN {pending} THEN 'pending'
                    WHEN s{p}.h_src IS NOT NULL THEN 'held' END AS {p}_state,
               CASE WHEN {none} THEN NULL WHEN {pending} THEN s{p}.p_src
                    ELSE s{p}.h_src END AS {p}_src"""
    return joins, cols
