"""The simulator's promises: deterministic, on contract, believable funnels, learnable signal."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import duckdb
import numpy as np
import pyarrow.parquet as pq

from shoprec import contract
from shoprec.config import Settings
from shoprec.lake import content_hash, list_batches
from shoprec.simulate import DEFAULT_START, simulate
from shoprec.simulate.scales import SCALES


def _events_sql(s: Settings) -> str:
    return f"read_parquet('{s.zone('landing')}/*/events.parquet')"


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    homes = [Settings(home=tmp_path / n) for n in ("a", "b", "c")]
    for s, seed in zip(homes, (1, 1, 2), strict=True):
        simulate("tiny", seed=seed, days=5, settings=s)
    hashes = [[content_hash(b) for b in list_batches("landing", settings=s)] for s in homes]
    assert len(hashes[0]) == 5
    assert hashes[0] == hashes[1]
    assert all(x != y for x, y in zip(hashes[0], hashes[2], strict=True))


def test_rerun_is_idempotent(tmp_path):
    s = Settings(home=tmp_path)
    first = simulate("tiny", seed=3, days=4, settings=s)
    before = [content_hash(b) for b in list_batches("landing", settings=s)]
    again = simulate("tiny", seed=3, days=6, settings=s)
    after = [content_hash(b) for b in list_batches("landing", settings=s)]
    assert first.days_written == 4
    assert (again.days_written, again.days_skipped) == (2, 4)
    assert after[:4] == before


def test_batches_match_the_contract_exactly(tiny_shop):
    batches = list_batches("landing", settings=tiny_shop)
    assert len(batches) == SCALES["tiny"].days
    for b in batches:
        for f in b.glob("*.parquet"):
            schema = pq.read_schema(f).remove_metadata()
            assert schema.equals(contract.SCHEMAS[f.stem]), f


def test_tiny_scale_size_and_unique_ids(tiny_shop):
    con = duckdb.connect()
    n, distinct = con.execute(
        f"select count(*), count(distinct event_id) from {_events_sql(tiny_shop)}").fetchone()
    assert 35_000 <= n <= 70_000
    assert distinct == n
    types = dict(con.execute(
        f"select event_type, count(*) from {_events_sql(tiny_shop)} group by 1").fetchall())
    assert set(types) == set(contract.EVENT_TYPES)
    # a funnel narrows
    assert types["view"] > types["click"] > types["add_to_cart"] > types["purchase"] > 0


def test_no_funnel_step_without_a_prior_view_in_the_session(tiny_shop):
    con = duckdb.connect()
    ev = _events_sql(tiny_shop)
    orphans = con.execute(f"""
        select count(*) from {ev} e
        where e.event_type <> 'view' and not exists (
            select 1 from {ev} v where v.session_id = e.session_id and v.item_id = e.item_id
              and v.event_type = 'view' and v.event_timestamp <= e.event_timestamp)""").fetchone()
    assert orphans == (0,)
    # and each purchase has an add_to_cart of that item before it in the session
    no_cart = con.execute(f"""
        select count(*) from {ev} e where e.event_type = 'purchase' and not exists (
            select 1 from {ev} c where c.session_id = e.session_id and c.item_id = e.item_id
              and c.event_type = 'add_to_cart' and c.event_timestamp <= e.event_timestamp)
    """).fetchone()
    assert no_cart == (0,)


def test_timestamps_in_range_and_references_known(tiny_shop):
    con = duckdb.connect()
    lake = tiny_shop.zone("landing")
    start = dt.datetime.combine(DEFAULT_START, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=SCALES["tiny"].days + 1)
    lo, hi = con.execute(
        f"select min(event_timestamp), max(event_timestamp) from {_events_sql(tiny_shop)}"
    ).fetchone()
    assert start <= lo and hi < end
    # every event's item and user appears in a batch on or before the event's batch
    bad = con.execute(f"""
        with ev as (select *, parse_path(filename)[-2] as b
                    from read_parquet('{lake}/*/events.parquet', filename=true)),
             it as (select item_id, parse_path(filename)[-2] as b
                    from read_parquet('{lake}/*/items.parquet', filename=true)),
             us as (select user_id, parse_path(filename)[-2] as b
                    from read_parquet('{lake}/*/users.parquet', filename=true))
        select
          (select count(*) from ev where not exists
              (select 1 from it where it.item_id = ev.item_id and it.b <= ev.b)),
          (select count(*) from ev where not exists
              (select 1 from us where us.user_id = ev.user_id and us.b <= ev.b))
    """).fetchone()
    assert bad == (0, 0)


def test_new_users_arrive_and_consumables_are_bought_again(tiny_shop):
    con = duckdb.connect()
    lake = tiny_shop.zone("landing")
    # users who signed up after day 0 show up in events (cold start)
    cold = con.execute(f"""
        select count(distinct u.user_id) from read_parquet('{lake}/*/users.parquet') u
        join {_events_sql(tiny_shop)} e using (user_id)
        where u.signup_at >= timestamp '{DEFAULT_START}' + interval 1 day""").fetchone()[0]
    assert cold >= 100
    repeats = con.execute(f"""
        select count(*) from (select user_id, item_id from {_events_sql(tiny_shop)}
            where event_type = 'purchase' group by 1, 2 having count(distinct session_id) > 1)
    """).fetchone()[0]
    assert repeats >= 20


def test_cooccurrence_beats_popularity_on_held_out_purchases(tiny_shop):
    """The behaviour carries learnable signal: session co-occurrence predicts a user's next
    purchases (from earlier sessions only) better than global popularity does."""
    con = duckdb.connect()
    rows = con.execute(f"""select user_id, item_id, event_type, session_id, event_timestamp
        from {_events_sql(tiny_shop)} order by event_timestamp""").fetchall()
    cutoff = max(r[4] for r in rows) - dt.timedelta(days=7)
    train = [r for r in rows if r[4] < cutoff]
    items = sorted({r[1] for r in rows})
    ix = {it: i for i, it in enumerate(items)}
    popularity = np.zeros(len(items))
    for r in train:
        popularity[ix[r[1]]] += 1
    sessions: dict[str, set[int]] = defaultdict(set)
    for r in train:
        sessions[r[3]].add(ix[r[1]])
    cooc = np.zeros((len(items), len(items)), np.float32)
    for s in sessions.values():
        idx = np.fromiter(s, int)
        cooc[np.ix_(idx, idx)] += 1
    np.fill_diagonal(cooc, 0)
    history: dict[str, list[tuple]] = defaultdict(list)
    for r in rows:
        history[r[0]].append(r)
    hits = Counter()
    n = 0
    for evs in history.values():
        for r in evs:
            if r[2] != "purchase" or r[4] < cutoff:
                continue
            before = [ix[e[1]] for e in evs if e[4] < r[4] and e[3] != r[3]][-20:]
            if not before:
                continue
            n += 1
            target = ix[r[1]]
            score = cooc[before].sum(0) + 1e-6 * popularity
            score[before] += score.max() + 1  # an item co-occurs with itself: seen first
            hits["cooc"] += target in np.argsort(-score)[:20]
            hits["pop"] += target in np.argsort(-popularity)[:20]
    assert n >= 200
    assert hits["cooc"] > 1.3 * hits["pop"], (hits, n)
