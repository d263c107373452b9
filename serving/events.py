"""POST /events: shop events checked against the data contract, accepted once, kept durably and
landed in the lake as batches that the validation gate judges like any other delivery.

`EventIntake.accept` takes one event object or a list of them (at most `serving.max_batch`).
Every event is checked first, against the contract's own rules (`shoprec.contract`: required
fields, `EVENT_TYPES`, `MAX_ID_LENGTH`, epoch units by magnitude, int32 quantities) and against the
row rules of the dataset's validation profile that one event can break (time, price and
quantity ranges, unless the profile switches them off): what the API accepts, the gate accepts.
A call with any bad event accepts nothing and raises `EventError`, one line naming the event's
position, the field and the rule (the app answers 422).

Storage: one SQLite file per dataset (`Settings.event_spool`, WAL, `synchronous=FULL`) shared by
every serving process (uvicorn workers) of the dataset:

- `events`: every event id ever accepted (the seen-set: a resent id is a duplicate and changes
  nothing, across calls, processes and restarts), with the normalized event as long as it waits in
  the spool;
- `batches`: spooled events claimed for a landing batch, and whether that batch landed.

One `accept` is one transaction: the new ids and their events are written in the same commit,
fsync'd before `accept` returns, so the seen-set and the spool never disagree and a 2xx is never
answered for an event that a crash could lose.

Flushing (`flush`; a background thread by default, and `close`) lands spooled events when
`serving.flush_events` wait or the oldest waits `serving.flush_seconds`, one process at a time
(an fcntl lock, `Settings.event_flush_lock`):

1. a batch claimed but not marked landed (a crash in between) is landed again from the spool;
   its id derives from its content, and a batch already in the lake under that id is left alone;
2. spooled events, oldest first, at most `flush_events` at a time, are claimed in one transaction
   as batch `api-<UTC time the first was accepted>-<sha256 of the event ids>[:12]`;
3. the batch lands through `shoprec.lifecycle.land_tables` (the importers' path: a conformed
   events table, written atomically by `lake.write_batch` with its arrival number);
4. it is marked landed and its events leave the spool (their ids stay in the seen-set).

So a crash at any point loses nothing and lands nothing twice; a new `EventIntake` flushes
whatever an earlier process left behind. `event_seq` (contract.TIE_ORDER) is the spool's
sequence number: the order the API accepted the events in.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from shoprec import contract
from shoprec.config import Settings, ValidationSettings
from shoprec.names import check_name
from shoprec.privacy.log import Forgotten

log = logging.getLogger(__name__)

REQUIRED: tuple[str, ...] = ("event_id", "user_id", "item_id", "event_type", "event_timestamp")
OPTIONAL: tuple[str, ...] = ("session_id", "price", "quantity")
FIELDS: tuple[str, ...] = REQUIRED + OPTIONAL
"""What an event object may hold: the contract's events columns but `event_seq`, which the
spool assigns (the order of acceptance)."""
SOURCE = "POST /events"
BATCH_PREFIX = "api"
SHOWN_CHARS = 40
_INT32 = (-(2**31), 2**31 - 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_HINT = "ISO-8601 with a timezone (2026-01-05T10:00:00Z, ...+01:00) or epoch s/ms/us/ns"


class EventError(contract.ContractError):
    """An event (or a call) that does not fit the contract. The message is one line naming the
    event's 0-based position in the call, the field and the rule: `events[3].user_id: ...`."""

    def __init__(self, position: int | None, field: str | None, rule: str):
        where = "events" if position is None else f"events[{position}]"
        where += f".{field}" if field else ""
        self.source, self.column, self.rule, self.sample = where, field, rule, None
        self.position, self.field = position, field
        ValueError.__init__(self, f"{where}: {rule}")


class _Rule(ValueError):
    """A field's value breaks `rule` (the caller adds position and field)."""


# ------------------------------------------------------------------------------ one event's rules

def _shown(value: object) -> str:
    """A value for a one-line message: repr (escapes newlines), long text cut."""
    text = repr(value)
    if len(text) > SHOWN_CHARS:
        n = f" ({len(value):,} characters)" if isinstance(value, str) else ""
        text = text[:SHOWN_CHARS] + "…" + n
    return text


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def id_problem(value: object) -> str | None:
    """Why `value` cannot be an id of the contract (event, user, item or session), None if it
    can: text of 1..MAX_ID_LENGTH printable characters (no control, format, surrogate or
    separator characters but the space) without leading or trailing spaces. An integer stands
    for its decimal text, as the importers read a numeric id column."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return f"must be a string, got {_kind(value)}"
    if not value:
        return "empty: an id needs at least one character"
    if len(value) > contract.MAX_ID_LENGTH:
        return (f"too long: {len(value):,} characters, the contract allows at most "
                f"{contract.MAX_ID_LENGTH} (contract.MAX_ID_LENGTH)")
    if not value.isprintable():
        i, ch = next((i, c) for i, c in enumerate(value) if not c.isprintable())
        return (f"character {ch!r} (U+{ord(ch):04X}) at {i} is not allowed: ids are printable "
                f"text (no control, format or separator characters but the space)")
    if value != value.strip():
        return f"{_shown(value)} has leading or trailing spaces"
    return None


def check_id(value: object, name: str = "id") -> str:
    """`value` as an id (an integer → its text), or ValueError `<name>: <rule>` (one line): the
    check the app can apply to path parameters too (`/recommendations/{user_id}`)."""
    problem = id_problem(value)
    if problem:
        raise ValueError(f"{name}: {problem}")
    return str(value)


def _id(value: object) -> str:
    problem = id_problem(value)
    if problem:
        raise _Rule(problem)
    return str(value)


def _event_type(value: object) -> str:
    if not isinstance(value, str) or value not in contract.EVENT_TYPES:
        raise _Rule(f"{_shown(value)} is not an event type of the contract "
                    f"{list(contract.EVENT_TYPES)}")
    return value


def _timestamp(value: object, v: ValidationSettings, now: dt.datetime) -> dt.datetime:
    """ISO-8601 text with an offset, or an epoch number in the unit its magnitude gives
    (contract.epoch_unit); → UTC, microseconds (finer digits dropped, as conform does)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Rule(f"must be {_TIME_HINT}, got {_kind(value)}")
    if isinstance(value, str):
        try:
            ts = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Rule(f"{_shown(value)} is not an ISO-8601 timestamp; use {_TIME_HINT}"
                        ) from None
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise _Rule(f"{_shown(value)} has no timezone: give an offset (Z, +01:00) or an "
                        f"epoch number; a naive time is ambiguous")
        try:
            ts = ts.astimezone(dt.UTC)
        except OverflowError:
            raise _Rule(f"{_shown(value)} is outside the years 1..9999") from None
    else:
        ts = _epoch(value)
    if "time_range" not in v.skip_rules:
        earliest = v.min_timestamp if v.min_timestamp.tzinfo else \
            v.min_timestamp.replace(tzinfo=dt.UTC)
        latest = now + dt.timedelta(minutes=v.future_slack_minutes)
        if ts < earliest:
            raise _Rule(f"{ts.isoformat()} is before {earliest.isoformat()} "
                        "(validation.min_timestamp)")
        if ts > latest:
            raise _Rule(f"{ts.isoformat()} is in the future: later than now + "
                        f"{v.future_slack_minutes} min (validation.future_slack_minutes)")
    return ts


def _epoch(value: int | float) -> dt.datetime:
    if isinstance(value, float) and not math.isfinite(value):
        raise _Rule(f"{value!r} is not a timestamp; use {_TIME_HINT}")
    unit = contract.epoch_unit(pa.array([float(value)], pa.float64()))
    if unit is None:
        years = f"{contract.PLAUSIBLE_YEARS[0]}..{contract.PLAUSIBLE_YEARS[1]}"
        raise _Rule(f"{value!r} is not an epoch s/ms/us/ns date in {years} "
                    "(contract.PLAUSIBLE_YEARS); use ISO-8601 with a timezone")
    factor = contract.EPOCH_UNITS[unit]
    if isinstance(value, int):  # exact, as conform reads an integer column
        us = value * factor if factor > 0 else value // -factor
    else:
        us = round(value * factor) if factor > 0 else round(value / -factor)
    return _EPOCH + dt.timedelta(microseconds=us)


def _price(value: object, v: ValidationSettings) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Rule(f"must be a number, got {_kind(value)}")
    try:
        price = float(value)
    except OverflowError:
        raise _Rule(f"{_shown(value)} is too large for a price") from None
    if not math.isfinite(price):
        raise _Rule(f"{value!r} is not a finite number")
    if "price_range" not in v.skip_rules and not 0 <= price <= v.price_ceiling:
        raise _Rule(f"{price:g} is outside 0..{v.price_ceiling:g} (validation.price_ceiling)")
    return price


def _quantity(value: object, v: ValidationSettings) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Rule(f"must be a whole number, got {_shown(value)}")
    if not _INT32[0] <= value <= _INT32[1]:
        raise _Rule(f"{value} does not fit the contract's int32")
    if "quantity_range" not in v.skip_rules and not 1 <= value <= v.max_quantity:
        raise _Rule(f"{value} is outside 1..{v.max_quantity} (validation.max_quantity)")
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """One accepted event, normalized: ids as text, the timestamp as a UTC datetime."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    event_timestamp: dt.datetime  # timezone UTC, microsecond resolution
    session_id: str | None = None
    price: float | None = None
    quantity: int | None = None

    @property
    def timestamp(self) -> dt.datetime:
        """`event_timestamp` (UTC)."""
        return self.event_timestamp

    @property
    def timestamp_us(self) -> int:
        """Microseconds since the epoch (what the contract's timestamp column holds)."""
        return (self.event_timestamp - _EPOCH) // dt.timedelta(microseconds=1)

    def _row(self) -> str:
        return json.dumps([self.event_id, self.user_id, self.item_id, self.event_type,
                           self.timestamp_us, self.session_id, self.price, self.quantity])

    @classmethod
    def _from_row(cls, text: str) -> Event:
        e, u, i, t, us, s, p, q = json.loads(text)
        return cls(e, u, i, t, _EPOCH + dt.timedelta(microseconds=us), s, p, q)


def check_event(obj: object, v: ValidationSettings, now: dt.datetime,
                position: int = 0) -> Event:
    """One event object → Event, or EventError naming `position`, the field and the rule."""
    if not isinstance(obj, dict):
        raise EventError(position, None, f"an event must be an object of fields {list(FIELDS)}, "
                         f"got {_kind(obj)}")
    for key in obj:
        if key not in FIELDS:
            why = " (the API numbers events itself, in the order it accepts them)" \
                if key == "event_seq" else ""
            raise EventError(position, str(key), f"unknown field{why}; an event holds "
                             f"{list(REQUIRED)} and optionally {list(OPTIONAL)}")
    for key in REQUIRED:
        if obj.get(key) is None:
            raise EventError(position, key, "missing: required by the contract" if key not in obj
                             else "null: required by the contract")
    field = "event_id"
    try:
        values = {}
        for field in ("event_id", "user_id", "item_id"):
            values[field] = _id(obj[field])
        field = "event_type"
        values[field] = _event_type(obj[field])
        field = "event_timestamp"
        values[field] = _timestamp(obj[field], v, now)
        field = "session_id"
        values[field] = None if obj.get(field) is None else _id(obj[field])
        field = "price"
        values[field] = _price(obj.get(field), v)
        field = "quantity"
        values[field] = _quantity(obj.get(field), v)
    except _Rule as e:
        raise EventError(position, field, str(e)) from None
    return Event(**values)


def check_events(payload: object, v: ValidationSettings, max_batch: int,
                 now: dt.datetime | None = None) -> list[Event]:
    """One event object or a list of 1..`max_batch` → Events in the call's order, or the
    EventError of the first bad one (nothing of the call is accepted then)."""
    now = now or dt.datetime.now(dt.UTC)
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise EventError(None, None, f"expected an event object or a list of them, got "
                         f"{_kind(payload)}")
    if not payload:
        raise EventError(None, None, "no events: send an event object or a list of "
                         f"1..{max_batch:,}")
    if len(payload) > max_batch:
        raise EventError(None, None, f"{len(payload):,} events in one call: at most "
                         f"{max_batch:,} (serving.max_batch); nothing was accepted")
    return [check_event(obj, v, now, i) for i, obj in enumerate(payload)]


def events_table(events: list[Event], seqs: list[int], source: str = SOURCE) -> pa.Table:
    """Events as a contract events table (conformed: the batch the importers would land)."""
    cols = {name: [getattr(e, name) for e in events] for name in FIELDS}
    cols["event_seq"] = seqs
    table = pa.table({f.name: pa.array(cols[f.name], f.type) for f in contract.EVENTS},
                     schema=contract.EVENTS)
    return contract.conform(table, "events", source)


# ---------------------------------------------------------------------------------- the intake

@dataclass(frozen=True)
class Accepted:
    """What one `accept` did: the events it accepted (new ids, in the call's order, normalized)
    and the duplicates it ignored (ids accepted before, or repeated earlier in the call)."""

    events: tuple[Event, ...]
    duplicates: int
    duplicate_ids: tuple[str, ...] = ()
    forgotten: int = 0  # events of users who asked to be forgotten: neither stored nor pushed

    @property
    def accepted(self) -> int:
        return len(self.events)


ALREADY = "already in the lake"


@dataclass(frozen=True)
class Landed:
    """One batch of spooled events put into the landing zone (`outcome`: what
    lifecycle.land_tables did, or "already in the lake" after a crash)."""

    batch_id: str
    path: Path
    events: int
    outcome: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,            -- order of acceptance, across processes: event_seq
    event_id TEXT NOT NULL UNIQUE,      -- the seen-set
    accepted_at REAL NOT NULL,          -- unix seconds: the age that triggers a flush
    batch_id TEXT,                      -- NULL: spooled; else claimed by (then landed in) it
    row TEXT                            -- the normalized event while it waits; NULL once landed
);
CREATE INDEX IF NOT EXISTS spooled ON events(seq) WHERE batch_id IS NULL;
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    events INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    landed_at REAL,                     -- NULL: claimed, not (known to be) landed yet
    path TEXT
);
CREATE INDEX IF NOT EXISTS unlanded ON batches(first_seq) WHERE landed_at IS NULL;
"""


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (released by the kernel if the holder dies)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


class EventIntake:
    """POST /events of one dataset (see the module doc). Thread-safe; any number of processes
    may hold one on the same SHOPREC_HOME. `background`: a thread lands the spool when due
    (else the caller calls `flush`). Construction lands what an earlier process left spooled
    (if the lake refuses, it logs and the spool waits for the next flush); `close` stops the
    thread and lands everything."""

    def __init__(self, settings: Settings, dataset: str, *, background: bool = True):
        from shoprec.validation.profile import load_profile

        self.settings = settings
        self.dataset = check_name(dataset, "dataset")
        self.validation = load_profile(settings, self.dataset).validation
        self.max_batch = settings.serving.max_batch
        self.flush_events = settings.serving.flush_events
        self.flush_seconds = settings.serving.flush_seconds
        self.path = settings.event_spool(self.dataset)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = settings.event_flush_lock(self.dataset)
        self._db = self._connect()  # accept's connection, under _accept_lock
        self._flush_db = self._connect()  # the flusher's, under _flush_lock
        self._accept_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.forgotten = Forgotten(settings, self.dataset)
        _epoch(1_700_000_000)  # pyarrow's kernels load on first use, not in a request
        try:  # a spool left by a crash, or by processes that stopped
            self.flush(force=True)
        except Exception:  # the service still starts; the events wait, durable, for a retry
            log.exception("landing the events spooled in %s failed; they stay there",
                          self.path)
        if background:
            self._thread = threading.Thread(target=self._run, name=f"event-flush-{dataset}",
                                            daemon=True)
            self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")  # every commit fsync'd: durable before the 2xx
        db.executescript(_SCHEMA)
        return db

    # ------------------------------------------------------------------------------ accepting

    def check(self, payload: object) -> list[Event]:
        """The call's events, checked (EventError on the first bad one); stores nothing."""
        return check_events(payload, self.validation, self.max_batch)

    def accept(self, payload: dict | list[dict]) -> Accepted:
        """Check every event of the call, then store the new ones in one transaction, fsync'd
        before this returns. All or nothing: one bad event (EventError) accepts none of the
        call. An event id seen before (in an earlier call, by any process, before a restart, or
        earlier in this call) is a duplicate: counted, and nothing changes."""
        events = self.check(payload)
        kept = [e for e in events if e.user_id not in self.forgotten]
        dropped, events = len(events) - len(kept), kept
        fresh: list[Event] = []
        dups: list[str] = []
        seen: set[str] = set()
        now = time.time()
        with self._accept_lock:
            if self._closed:
                raise RuntimeError(f"the event intake of {self.dataset} is closed")
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    if e.event_id in seen:
                        dups.append(e.event_id)
                        continue
                    seen.add(e.event_id)
                    cur = db.execute(
                        "INSERT INTO events (event_id, accepted_at, row) VALUES (?, ?, ?) "
                        "ON CONFLICT (event_id) DO NOTHING", (e.event_id, now, e._row()))
                    (fresh.append(e) if cur.rowcount == 1 else dups.append(e.event_id))
                spooled = db.execute(
                    "SELECT count(*) FROM events WHERE batch_id IS NULL").fetchone()[0]
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        if spooled >= self.flush_events:
            self._wake.set()
        return Accepted(tuple(fresh), len(dups), tuple(dups), dropped)

    @property
    def spooled(self) -> int:
        """Accepted events not landed yet (claimed ones included)."""
        with self._flush_lock:
            return self._flush_db.execute(
                "SELECT (SELECT count(*) FROM events WHERE batch_id IS NULL) + (SELECT "
                "coalesce(sum(events), 0) FROM batches WHERE landed_at IS NULL)").fetchone()[0]

    # -------------------------------------------------------------------------------- landing

    def flush(self, force: bool = False) -> list[Landed]:
        """Land the spool if due (`force`: all of it now), in batches of at most
        `flush_events`; returns the batches this call landed. Safe to call from any thread and
        process at any time: one lands at a time, nothing lands twice."""
        with self._flush_lock:
            db = self._flush_db
            if not force and not self._due(db):
                return []
            out: list[Landed] = []
            with _file_lock(self._lock_file):
                for claim in db.execute("SELECT batch_id, first_seq, last_seq FROM batches "
                                        "WHERE landed_at IS NULL ORDER BY first_seq").fetchall():
                    out.append(self._land(db, *claim))
                while force or self._due(db):
                    claim = self._claim(db)
                    if claim is None:
                        break
                    out.append(self._land(db, *claim))
        self._announce(out)
        return out

    def _due(self, db: sqlite3.Connection) -> bool:
        n, oldest = db.execute("SELECT count(*), min(accepted_at) FROM events "
                               "WHERE batch_id IS NULL").fetchone()
        if n >= self.flush_events or (n and time.time() - oldest >= self.flush_seconds):
            return True
        return db.execute("SELECT 1 FROM batches WHERE landed_at IS NULL LIMIT 1").fetchone() \
            is not None

    def _claim(self, db: sqlite3.Connection) -> tuple[str, int, int] | None:
        """The oldest spooled events (at most flush_events) as one batch, in one transaction."""
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT seq, event_id, accepted_at FROM events WHERE batch_id "
                              "IS NULL ORDER BY seq LIMIT ?", (self.flush_events,)).fetchall()
            if not rows:
                db.execute("COMMIT")
                return None
            first, last = rows[0][0], rows[-1][0]
            batch_id = batch_name([r[1] for r in rows], rows[0][2])
            db.execute("UPDATE events SET batch_id = ? WHERE batch_id IS NULL AND seq BETWEEN "
                       "? AND ?", (batch_id, first, last))
            db.execute("INSERT INTO batches (batch_id, first_seq, last_seq, events, claimed_at) "
                       "VALUES (?, ?, ?, ?, ?)", (batch_id, first, last, len(rows), time.time()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return batch_id, first, last

    def _land(self, db: sqlite3.Connection, batch_id: str, first: int, last: int) -> Landed:
        from shoprec.lake import find_batch
        from shoprec.lifecycle import land_tables

        rows = db.execute("SELECT seq, row FROM events WHERE batch_id = ? AND seq BETWEEN ? AND ? "
                          "ORDER BY seq", (batch_id, first, last)).fetchall()
        hit = find_batch(batch_id, dataset=self.dataset, settings=self.settings)
        if hit is not None:  # landed before a crash kept it from being marked
            path, outcome = hit[1], ALREADY
        else:
            if any(r[1] is None for r in rows):
                raise RuntimeError(f"spool {self.path}: batch {batch_id} is marked unlanded, "
                                   "its events are gone and the lake does not hold it")
            table = events_table([Event._from_row(r[1]) for r in rows], [r[0] for r in rows],
                                 f"{SOURCE} batch {batch_id}")
            path, outcome = land_tables(batch_id, {"events": table}, dataset=self.dataset,
                                        settings=self.settings, source=SOURCE)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE batches SET landed_at = ?, path = ? WHERE batch_id = ?",
                       (time.time(), str(path), batch_id))
            db.execute("UPDATE events SET row = NULL WHERE batch_id = ? AND seq BETWEEN ? AND ?",
                       (batch_id, first, last))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        log.info("landed %d POST /events events as batch %s (%s)", len(rows), batch_id, outcome)
        return Landed(batch_id, Path(path), len(rows), outcome)

    def _announce(self, landed: list[Landed]) -> None:
        """Tell Airflow's pipeline about the new batches (best effort, outside the flush lock:
        a slow API never holds up the next flush)."""
        new = [b.batch_id for b in landed if b.outcome != ALREADY]
        if new and self.settings.airflow.api_url:
            from shoprec.pipeline.announce import announce_landing

            log.info(announce_landing(self.dataset, new, SOURCE, self.settings))

    # ------------------------------------------------------------------------------ lifecycle

    def _run(self) -> None:
        tick = max(0.05, min(1.0, self.flush_seconds / 4))
        failures = 0
        while not self._stop.is_set():
            self._wake.wait(tick if not failures else min(30.0, tick * 2 ** failures))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
                failures = 0
            except Exception:  # the events stay in the spool; the next tick tries again
                failures += 1
                log.exception("landing spooled events of %s failed (attempt %d); they stay in "
                              "%s", self.dataset, failures, self.path)

    def close(self) -> None:
        """Stop the background thread and land everything spooled (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush(force=True)
        finally:
            with self._accept_lock, self._flush_lock:
                self._db.close()
                self._flush_db.close()

    def __enter__(self) -> EventIntake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_name(event_ids: list[str], first_accepted_at: float) -> str:
    """`api-<UTC time the first event was accepted>-<sha256 of the event ids>[:12]`: the same
    events always make the same batch id (a re-landing after a crash finds it), and no two
    batches share one (an id is accepted once)."""
    h = hashlib.sha256()
    for event_id in event_ids:
        h.update(event_id.encode("utf-8") + b"\0")
    when = dt.datetime.fromtimestamp(first_accepted_at, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return check_name(f"{BATCH_PREFIX}-{when}-{h.hexdigest()[:12]}", "batch")
