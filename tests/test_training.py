"""Training: metrics and splits by hand-computed cases, the model's causality and cold-start path,
then a real run on the tiny shop (dbt warehouse + Feast point-in-time features): reproducible,
checkpointed, exported, and the export scores exactly like the trained model."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from shoprec.config import Settings, TrainingSettings
from training.baselines import ItemKNN, PersonalHistory, Popularity
from training.data import Catalogue, Interactions, collapse_runs, session_index
from training.metrics import evaluate
from training.model import SeqRec, SeqRecConfig
from training.splits import (
    DAY_US,
    EvalSet,
    SplitError,
    leave_one_out,
    make_split,
    session_split,
    time_split,
)
from training.tensors import training_windows


def _interactions(rows: list[tuple[int, int, int, int]], n_items: int = 6) -> Interactions:
    """rows of (user, item, etype, day)."""
    u, i, e, d = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    ids = np.array([""] + [f"i{k}" for k in range(1, n_items + 1)], dtype=object)
    cat = Catalogue(item_ids=ids,
                    category=np.r_[0, np.ones(n_items, dtype=np.int64)],
                    brand=np.zeros(n_items + 1, dtype=np.int64),
                    price_bucket=np.zeros(n_items + 1, dtype=np.int64),
                    categories=["", "c"], brands=[""], price_edges=[])
    ts = d * DAY_US + np.arange(len(d))  # strictly increasing within a user
    users = np.array([f"u{k}" for k in range(u.max() + 1)], dtype=object)
    return Interactions(u, i, e, ts, users, cat, "t")


def _one_row_set(targets: list[int], excluded: list[int] = ()) -> EvalSet:
    return EvalSet("test", np.array([0]), np.array([0]), np.array([0, len(targets)]),
                   np.array(targets), np.array([0, len(excluded)]), np.array(excluded, dtype=int),
                   np.array([0]))


def test_metrics_match_hand_computed_values():
    scores = torch.tensor([[0.0, 5, 4, 3, 2, 1, 0.5]])  # ranking: 1, 2, 3, 4, 5, 6

    def score(es, rows):
        return scores.expand(len(rows), -1)

    m = evaluate(score, _one_row_set([3]), 6, ks=(2, 5))
    assert m["recall@2"] == 0 and m["hit@2"] == 0 and m["ndcg@2"] == 0
    assert m["recall@5"] == 1 and m["mrr@5"] == pytest.approx(1 / 3)
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(4))
    m = evaluate(score, _one_row_set([2, 6]), 6, ks=(5,))  # two targets, one in the top 5
    assert m["recall@5"] == pytest.approx(0.5)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["coverage@5"] == pytest.approx(5 / 6)
    m = evaluate(score, _one_row_set([3], excluded=[1, 2]), 6, ks=(1,))  # 3 moves to the top
    assert m["recall@1"] == 1 and m["mrr@1"] == 1


def test_collapse_keeps_the_deepest_funnel_stage_of_a_run():
    x = _interactions([(0, 1, 1, 0), (0, 1, 2, 0), (0, 1, 4, 0), (0, 2, 1, 0), (0, 1, 1, 1),
                       (1, 1, 1, 0)])
    c = collapse_runs(x)
    assert c.item.tolist() == [1, 2, 1, 1] and c.etype.tolist() == [4, 1, 1, 1]
    assert c.user.tolist() == [0, 0, 0, 1] and c.ts[0] == x.ts[0]


def test_leave_one_out_holds_out_the_last_two_interactions_per_user():
    x = _interactions([(0, 1, 1, 0), (0, 2, 1, 1), (0, 3, 1, 2), (0, 4, 1, 3),
                       (1, 5, 1, 0), (1, 6, 1, 1)])  # user 1 is too short to evaluate
    s = leave_one_out(x)
    assert s.train_mask.tolist() == [True, True, False, False, True, True]
    assert s.valid.target_items.tolist() == [3] and s.valid.hist_end.tolist() == [2]
    assert s.test.target_items.tolist() == [4] and s.test.hist_end.tolist() == [3]
    # the valid target is part of the test history
    assert x.item[:s.test.hist_end[0]].tolist() == [1, 2, 3]


def test_time_split_and_exclusion_of_purchased_items():
    x = _interactions([(0, 1, 4, 0), (0, 2, 1, 1), (0, 1, 1, 8), (0, 3, 1, 9),
                       (1, 4, 1, 0), (1, 5, 1, 9)])
    s = time_split(x, test_days=2, valid_days=2, exclude="none")
    assert s.train_mask.tolist() == [True, True, False, False, True, False]
    assert len(s.valid) == 0  # nobody interacted on days 6-7
    assert s.test.users.tolist() == [0, 1]
    assert s.test.target_items.tolist() == [1, 3, 5]
    s = time_split(x, test_days=2, valid_days=2, exclude="purchased")
    assert s.test.target_items.tolist() == [3, 5]  # item 1 was bought before: not ranked
    assert s.test.excluded_items.tolist() == [1]
    with pytest.raises(ValueError, match="no training data"):
        time_split(x, test_days=5, valid_days=5)


MINUTE_US = 60 * 1_000_000


def test_sessions_cut_where_the_gap_exceeds_the_threshold():
    user = np.array([0, 0, 0, 0, 1, 1])
    ts = np.cumsum([0, 30 * MINUTE_US, 30 * MINUTE_US + 1, 1, 5, 30 * MINUTE_US - 1])
    # a gap of exactly 30 min stays, 1 us more starts a session; a new user always does
    assert session_index(user, ts, 30).tolist() == [0, 0, 1, 1, 2, 2]
    assert session_index(user, ts, 29).tolist() == [0, 1, 2, 2, 3, 4]
    # the log's ids decide between rows that have one (even across a long gap, or none); an
    # interleaved session of the log is not cut; rows without an id follow the gap
    known = np.array([7, 7, 8, 9, 7, -1])
    assert session_index(user, ts, 30, known).tolist() == [0, 0, 1, 2, 3, 3]
    assert session_index(user, ts, 29, known).tolist() == [0, 0, 1, 2, 3, 4]
    interleaved = np.array([7, 8, 7, -1, -1, -1])
    assert session_index(user, ts, 30, interleaved).tolist() == [0, 0, 0, 0, 1, 1]
    assert session_index(user, ts, 1, interleaved).tolist() == [0, 0, 0, 0, 1, 2]


def test_collapse_keeps_a_session_boundary():
    x = _interactions([(0, 1, 1, 0), (0, 1, 4, 0), (0, 1, 1, 1), (0, 2, 1, 1)])
    assert x.session.tolist() == [0, 0, 1, 1]  # one session a day (default gap)
    c = collapse_runs(x)
    assert c.item.tolist() == [1, 1, 2] and c.etype.tolist() == [4, 1, 1]
    assert c.session.tolist() == [0, 1, 1]
    assert c.select(np.array([False, True, True])).session.tolist() == [1, 1]


def test_session_split_holds_out_each_users_last_two_sessions():
    x = _interactions([(0, 1, 4, 0), (0, 2, 1, 0),  # session 1: bought item 1
                       (0, 3, 1, 1),  # session 2
                       (0, 4, 1, 2), (0, 2, 1, 2),  # session 3: valid
                       (0, 5, 1, 3), (0, 1, 4, 3), (0, 6, 1, 3), (0, 5, 2, 3),  # test
                       (1, 1, 1, 0), (1, 2, 1, 1), (1, 3, 1, 1)])  # 2 sessions: trains only
    s = make_split(x, "session", exclude="none")
    assert s.train_mask.tolist() == [True] * 3 + [False] * 6 + [True] * 3
    assert s.valid.users.tolist() == [0] and s.valid.hist_end.tolist() == [3]
    assert s.valid.target_items.tolist() == [2, 4]  # every distinct item of the session
    assert s.test.users.tolist() == [0] and s.test.hist_end.tolist() == [5]
    assert s.test.target_items.tolist() == [1, 5, 6]  # the repeat purchase of 1 counts
    assert s.test.cutoff_us.tolist() == [x.ts[5]]  # predicted at the session's first event
    assert s.window["protocol"] == "session" and s.window["session_gap_minutes"] == 30
    s = session_split(x, exclude="purchased")
    assert s.test.target_items.tolist() == [5, 6] and s.test.excluded_items.tolist() == [1]
    with pytest.raises(SplitError, match="no user has 3 sessions"):
        session_split(x.select(x.user == 1))
    with pytest.raises(ValueError, match="no user has 3 sessions"):  # a ValueError as well
        make_split(x.select(x.ts < 2 * DAY_US), "session")


def test_training_windows_predict_every_next_item_once():
    x = _interactions([(0, k % 6 + 1, 1, k) for k in range(12)] + [(1, 1, 1, 0), (1, 2, 1, 1)])
    w = training_windows(x, np.ones(len(x), dtype=bool), max_len=5)
    inputs, targets = w.items[:, :-1], w.items[:, 1:].clone()
    targets[inputs == 0] = 0
    predicted = sorted(int(t) for t in targets[targets != 0])
    expected = sorted(x.item[1:12].tolist() + [2])  # every item but each user's first
    assert predicted == expected


def _tiny_model() -> SeqRec:
    t = TrainingSettings(max_len=5, dim=8, heads=2)
    cfg = SeqRecConfig(n_items=6, n_categories=2, n_brands=2, n_price_buckets=3,
                       n_event_types=5, n_gap_buckets=4, n_user_features=0, max_len=t.max_len,
                       dim=t.dim, layers=t.layers, heads=t.heads, dropout=t.dropout,
                       id_dropout=t.id_dropout)
    torch.manual_seed(0)
    return SeqRec(cfg).eval()


def test_model_is_causal_and_ignores_left_padding():
    m = _tiny_model()
    items = torch.tensor([[0, 1, 2, 3, 4]])
    et, gaps = torch.ones_like(items), torch.ones_like(items)
    et[0, 0] = gaps[0, 0] = 0
    h = m.encode(items, et, gaps, torch.zeros(1, 1, 0))
    changed = items.clone()
    changed[0, 4] = 6
    h2 = m.encode(changed, et, gaps, torch.zeros(1, 1, 0))
    assert torch.allclose(h[0, :4], h2[0, :4]) and not torch.allclose(h[0, 4], h2[0, 4])
    # a padded slot's content never reaches a real position
    noisy = m.encode(items, et.clone().index_fill_(1, torch.tensor([0]), 3), gaps,
                     torch.zeros(1, 1, 0))
    assert torch.allclose(h[0, 1:], noisy[0, 1:])


def test_new_items_get_vectors_from_side_features():
    m = _tiny_model()
    m.set_item_features(torch.tensor([0, 1, 1, 1, 1, 1, 1]), torch.tensor([0, 1, 1, 1, 1, 1, 1]),
                        torch.tensor([0, 1, 2, 1, 2, 1, 2]))
    with torch.no_grad():
        m.item_emb.weight[6].zero_()  # an item no one interacted with
        v = m.item_vectors()
    side = m.side_vectors(torch.tensor([1]), torch.tensor([1]), torch.tensor([2]))
    assert torch.allclose(v[6], side[0]) and v[6].abs().sum() > 0


def test_scores_are_the_dot_product_plus_the_repeat_bonus_of_history_items():
    m = _tiny_model()
    with torch.no_grad():
        m.repeat_type.weight.fill_(0.5)
        m.repeat_dist.weight.uniform_()
        items = torch.tensor([[0, 2, 5, 2, 3]])
        et = torch.tensor([[0, 1, 4, 2, 1]])
        f = torch.zeros(1, 0)
        gaps = (items > 0).long()
        s = m.scores(items, et, gaps, f)
        dot = m(items, et, gaps, f) @ m.item_vectors().t()
        bonus = m.repeat_bonus(items, et, gaps, f)
    assert bonus[0, 0] == 0  # padding contributes nothing
    expected = dot.clone()
    expected[0, 2] += bonus[0, 1] + bonus[0, 3]  # item 2 seen twice
    expected[0, 5] += bonus[0, 2]
    expected[0, 3] += bonus[0, 4]
    assert torch.allclose(s[:, 1:], expected[:, 1:], atol=1e-6)
    assert torch.equal(s[0, [1, 4, 6]], dot[0, [1, 4, 6]])  # unseen items: dot product only


def test_sampled_and_full_softmax_agree_when_every_item_is_a_negative():
    m = _tiny_model().train()
    m.id_dropout = 0.0
    with torch.no_grad():
        m.repeat_type.weight.fill_(0.3)
    items = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 2, 2, 6]])
    et = (items > 0).long()
    targets = torch.tensor([[0, 2, 3, 4, 5], [0, 0, 2, 6, 1]])
    f = torch.zeros(2, 5, 0)
    m.eval()  # no dropout: both losses see the same hidden states
    full = m.loss(items, et, et.clone(), f, targets)
    sampled = m.loss(items, et, et.clone(), f, targets, negatives=torch.arange(1, 7))
    assert torch.allclose(full, sampled, atol=1e-5)


def test_baselines_rank_what_they_should():
    x = _interactions([(0, 1, 1, 0), (0, 2, 1, 0), (1, 1, 1, 0), (1, 2, 1, 0), (2, 1, 1, 0),
                       (2, 3, 1, 0), (3, 1, 4, 0), (3, 5, 1, 1), (3, 5, 1, 1)], n_items=6)
    mask = np.ones(len(x), dtype=bool)
    es = EvalSet("test", np.array([3]), np.array([len(x)]), np.array([0, 1]), np.array([2]),
                 np.array([0, 0]), np.empty(0, dtype=int), np.array([2 * DAY_US]))
    pop = Popularity(x, mask, None)
    assert pop(es, np.array([0]))[0].argmax().item() == 1  # item 1: most interactions
    knn = ItemKNN(x, mask, neighbours=10, last=1)  # from the last item (5): only its neighbour 1
    s = knn(es, np.array([0]))[0]
    assert s[1] > 0 and s[2] == s[3] == 0
    knn = ItemKNN(x, mask, neighbours=10, last=None)  # from item 1: 2 co-occurs most
    s = knn(es, np.array([0]))[0]
    assert s[2] > s[3] > s[4] == 0
    ph = PersonalHistory(x, mask, pop)(es, np.array([0]))[0]
    assert ph[1] > ph[5] > ph[2]  # a purchase weighs more than two views; then popularity


# --- a real training run on the tiny shop ------------------------------------------------------


@pytest.fixture(scope="module")
def trained(built_shop, tmp_path_factory):
    """Two short runs with one seed on the session's built shop (warehouse + Feast features)."""
    from training.train import train

    s = Settings(home=built_shop.home, training=TrainingSettings(
        max_epochs=4, patience=10, dim=32, test_days=3, valid_days=3))
    a = train(s, seed=11, progress=False)
    b = train(s, seed=11, progress=False, baselines=False, export=False,
              run_dir=tmp_path_factory.mktemp("train-again"))
    return s, a, b


def test_training_is_reproducible_and_checkpoints_hold_args_and_config(trained):
    s, a, b = trained
    assert a.metrics["model/test"] == b.metrics["model/test"]
    assert a.metrics["model/valid"]["users"] > 50 and a.metrics["model/test"]["users"] > 50
    for name in ("popularity", "itemknn", "personal_history"):
        assert set(a.metrics[f"{name}/test"]) == set(a.metrics["model/test"])
    ck = torch.load(a.run_dir / "checkpoint.pt", weights_only=True)
    assert ck["model_args"]["n_user_features"] == 6  # Feast features were used
    assert ck["training"]["protocol"] == "time" and ck["epoch"] == a.best_epoch
    assert not list(a.run_dir.glob("*.tmp*"))


def test_export_loads_without_project_code_and_scores_like_the_model(trained):
    s, a, _ = trained
    export = a.run_dir / "export"
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["feature_service"] == "recommender_v2"
    assert meta["metrics"]["model/test"]["ndcg@10"] == a.metrics["model/test"]["ndcg@10"]
    assert meta["data_window"]["protocol"] == "time" and meta["code_version"]
    code = (
        "import sys, json, torch\n"
        "sys.modules['training'] = None; sys.modules['shoprec'] = None  # must not be needed\n"
        f"d = {str(export)!r}\n"
        "m = torch.jit.load(d + '/model.ts'); items = torch.load(d + '/items.pt', "
        "weights_only=True)\n"
        "meta = json.load(open(d + '/metadata.json'))\n"
        "L = meta['inputs']['max_len']; seq = torch.zeros(1, L, dtype=torch.long)\n"
        "seq[0, -3:] = torch.tensor([1, 2, 3]); et = (seq > 0).long(); gap = et.clone()\n"
        "f = torch.zeros(1, meta['inputs']['n_user_features'])\n"
        "u = m(seq, et, gap, f); s = m.scores(seq, et, gap, f)\n"
        "print(json.dumps([(u @ items.t())[0, 1:].topk(5).indices.add(1).tolist(),\n"
        "                  s[0, 1:].topk(5).indices.add(1).tolist()]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from training.train import load_checkpoint

    model, _ = load_checkpoint(a.run_dir / "checkpoint.pt")
    seq = torch.zeros(1, meta["inputs"]["max_len"], dtype=torch.long)
    seq[0, -3:] = torch.tensor([1, 2, 3])
    et = (seq > 0).long()
    with torch.no_grad():
        u = model(seq, et, et.clone(), torch.zeros(1, 6))
        top = (u @ model.item_vectors().t())[0, 1:].topk(5).indices.add(1).tolist()
        full = model.scores(seq, et, et.clone(), torch.zeros(1, 6))[0, 1:]
    assert json.loads(r.stdout) == [top, full.topk(5).indices.add(1).tolist()]


def test_evaluate_reproduces_the_run_from_the_export(trained):
    from training.evaluate import evaluate_export

    s, a, _ = trained
    metrics, _ = evaluate_export(s, a.run_dir / "export")
    for k in ("recall@20", "ndcg@10"):
        assert metrics["model/test"][k] == pytest.approx(a.metrics["model/test"][k], abs=1e-6)
        assert metrics["popularity/test"][k] == a.metrics["popularity/test"][k]


def test_make_split_rejects_an_unknown_protocol():
    x = _interactions([(0, 1, 1, 0), (0, 2, 1, 1), (0, 3, 1, 2)])
    with pytest.raises(ValueError, match="unknown protocol"):
        make_split(x, "random")


def test_train_rejects_an_unknown_protocol_in_one_line(shoprec_home):
    from typer.testing import CliRunner

    from shoprec.cli import app
    from shoprec.names import UsageError

    result = CliRunner().invoke(app, ["train", "--protocol", "sessions"])
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == ("--protocol 'sessions': expected one of time | loo | "
                                     "session")


def test_sessions_are_derived_where_the_warehouse_has_no_session_id(built_shop, tmp_path):
    """A warehouse built before dbt filled session_id: the same sessions come from the gaps."""
    import duckdb

    from tests.conftest import copy_published_warehouse
    from training.data import load_interactions

    own = Settings(home=tmp_path / "home", session_gap_minutes=20)
    copy_published_warehouse(built_shop, own)
    assert load_interactions(own).extra["sessions_from"] == "session_id"
    with duckdb.connect(str(own.internal_snapshot("shop"))) as con:
        con.execute("update marts.fct_events set session_id = null")
        n_sessions = con.execute(  # dbt's rule, in SQL
            "select count(*) filter (where prev is null or ts - prev > interval 20 minutes) "
            "from (select event_timestamp as ts, lag(event_timestamp) over (partition by "
            "user_id order by event_timestamp, event_id) as prev from marts.fct_events)"
        ).fetchone()[0]
    x = load_interactions(own)
    assert x.extra["sessions_from"] == "derived" and x.extra["session_gap_minutes"] == 20
    assert x.session_starts().sum() == x.session.max() + 1 == n_sessions
    gap = np.r_[True, (np.diff(x.ts) > 20 * MINUTE_US) | (x.user[1:] != x.user[:-1])]
    assert not (x.session_starts() & ~gap).any()  # a session starts after a gap only


def _with_user(settings: Settings, user: str, rows: list[tuple]) -> list[str]:
    """Replace `user`'s events in the warehouse by rows of (event_id, item index in dim_items,
    hour, delivery_position, event_seq); returns the user's items as training reads them."""
    import duckdb

    from training.data import load_interactions

    with duckdb.connect(str(settings.internal_snapshot("shop"))) as con:
        items = [r[0] for r in con.execute(
            "select item_id from marts.dim_items order by item_id limit 10").fetchall()]
        con.execute("delete from marts.fct_events where user_id = ?", [user])
        for event_id, item, hour, position, seq in rows:
            con.execute(
                "insert into marts.fct_events by name select ? as event_id, ? as user_id, "
                "? as item_id, 'view' as event_type, timestamptz '2026-01-05 00:00:00+00' "
                "+ to_hours(?) as event_timestamp, 's-' || ? as session_id, "
                "? as delivery_position, ? as event_seq",
                [event_id, user, items[item], hour, user, position, seq])
    x = load_interactions(settings)
    u = int(np.flatnonzero(x.user_ids == user)[0])
    index = {item: k for k, item in enumerate(items)}
    return [index[i] for i in x.catalogue.item_ids[x.item[x.user == u]]]


def test_ties_in_time_are_broken_by_the_source_order_never_by_the_item(built_shop, tmp_path):
    """contract.TIE_ORDER: events at one time follow (delivery, event_seq), whichever items
    and event ids they carry; without event_seq md5(event_id) decides, not the id's text."""
    import itertools

    from tests.conftest import copy_published_warehouse

    own = Settings(home=tmp_path / "home")
    copy_published_warehouse(built_shop, own)
    slots = [(1, 2), (1, 0), (2, 0), (1, 1)]  # (delivery_position, event_seq) of the tie
    by_source = [1, 3, 0, 2]  # slots in (position, seq) order
    perms = list(itertools.permutations([4, 5, 6, 7]))[::5]
    for items, ids in itertools.product(perms, [("t1", "t2", "t3", "t4"), ("z", "b", "y", "a")]):
        rows = [("t0", 9, 0, 1, 0)] + [(ids[k], items[k], 1, *slots[k]) for k in range(4)]
        assert _with_user(own, "u-ties", rows) == [9] + [items[k] for k in by_source]
    # no event_seq, one delivery: md5(event_id) orders e32 before e31, whatever their items
    for a, b in ((4, 5), (5, 4)):
        got = _with_user(own, "u-ties", [("e31", a, 1, 1, None), ("e32", b, 1, 1, None)])
        assert got == [b, a]


def test_metrics_do_not_depend_on_the_order_within_one_timestamp(built_shop, tmp_path):
    """A seeded shuffle of every tie group: the same rows and groups, another order inside; the
    baselines evaluated both ways (the simulator's shop has no ties: the figures agree)."""
    from tests.conftest import copy_published_warehouse
    from training.data import load_interactions
    from training.evaluate import baselines_with_shuffled_ties

    own = Settings(home=tmp_path / "home")
    copy_published_warehouse(built_shop, own)
    _with_user(own, "u-ties", [(f"t{k}", k, 1, 1, k) for k in range(8)])
    source = load_interactions(own)
    orders = {tuple(load_interactions(own, tie_seed=seed).item) for seed in range(6)}
    assert len(orders) > 1  # the 8 events at one time come in different orders
    for seed in (0, 1):
        x = load_interactions(own, tie_seed=seed)
        assert (x.user == source.user).all() and (x.ts == source.ts).all()
        # the same items at each (user, time), maybe in another order
        assert sorted(zip(x.user.tolist(), x.ts.tolist(), x.item.tolist(), strict=True)) == \
            sorted(zip(source.user.tolist(), source.ts.tolist(), source.item.tolist(),
                       strict=True))
    cfg = TrainingSettings(protocol="loo", exclude="interacted")
    figures = baselines_with_shuffled_ties(own, "shop", cfg, seeds=(1,))
    assert set(figures) == {"source", "shuffled:1"}
    for name, m in figures["source"].items():
        assert figures["shuffled:1"][name]["ndcg@10"] == pytest.approx(m["ndcg@10"], abs=2e-3)


@pytest.mark.slow  # the README's worked example (tests/test_byod.py) trains on sessions too
def test_session_protocol_trains_and_evaluates_the_model_and_the_baselines(built_shop, tmp_path):
    """Each user's last session is the test: the model and every baseline have metrics, and
    the export re-evaluates to the same figures on the run's sessions."""
    from training.evaluate import evaluate_export
    from training.train import train

    s = Settings(home=built_shop.home, training=TrainingSettings(
        protocol="session", max_epochs=2, patience=10, dim=16))
    r = train(s, seed=5, progress=False, run_dir=tmp_path / "run")
    assert r.protocol == "session" and r.window["protocol"] == "session"
    assert r.window["session_gap_minutes"] == s.session_gap_minutes
    for name in ("model", "popularity", "itemknn", "personal_history"):
        for part in ("valid", "test"):
            assert set(r.metrics[f"{name}/{part}"]) == set(r.metrics["model/test"])
    assert r.metrics["model/test"]["users"] > 50
    assert r.metrics["model/test"]["recall@20"] != r.metrics["model/test"]["hit@20"]  # sets
    metrics, meta = evaluate_export(s, r.run_dir / "export")
    assert meta["data_window"]["protocol"] == "session"
    assert metrics["model/test"]["ndcg@10"] == pytest.approx(r.metrics["model/test"]["ndcg@10"],
                                                             abs=1e-6)
    assert metrics["itemknn/test"] == r.metrics["itemknn/test"]


def test_the_time_budget_ends_an_epoch_early_and_keeps_its_checkpoint(built_shop, tmp_path):
    """At 10M events one epoch outlasts a 10-minute budget: the budget is kept inside the
    epoch, and what was trained is validated, checkpointed, evaluated and exported."""
    from training.train import train

    s = Settings(home=built_shop.home, training=TrainingSettings(
        max_epochs=5, patience=10, dim=16, batch_size=32, max_minutes=1e-9))
    r = train(s, seed=5, progress=False, baselines=False, run_dir=tmp_path / "run")
    assert r.epochs == 1 and r.best_epoch == 1
    ck = torch.load(r.run_dir / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1
    assert (r.run_dir / "export").is_dir() and r.metrics["model/test"]["users"] > 50
    full = train(s.model_copy(update={"training": s.training.model_copy(update={
        "max_epochs": 1, "max_minutes": None})}), seed=5, progress=False, baselines=False,
        export=False, run_dir=tmp_path / "full")
    # one batch stepped on, not the epoch's many
    assert 0 < r.sequences_per_s * r.train_seconds < full.sequences_per_s * full.train_seconds / 4


def test_baselines_are_tuned_on_a_sample_and_reported_on_every_validation_user(built_shop):
    from training.data import load_interactions
    from training.splits import make_split
    from training.train import run_baselines, tuning_split

    x = load_interactions(built_shop, "shop")
    split = make_split(x, "time", test_days=3, valid_days=3, exclude="none")
    n = len(split.valid)
    assert tuning_split(split, n) is split
    tuning = tuning_split(split, n // 3)
    rows = np.flatnonzero(np.isin(split.valid.users, tuning.valid.users))
    assert len(tuning.valid) == len(rows) == n // 3
    # the subset is the same evaluation restricted to those rows (targets, exclusions)
    for a, b in ((tuning.valid, split.valid.subset(rows)),):
        for f in ("users", "hist_end", "target_ptr", "target_items", "excluded_ptr",
                  "excluded_items", "cutoff_us"):
            assert np.array_equal(getattr(a, f), getattr(b, f)), f
    r = rows[len(rows) // 2]
    got = tuning.valid.target_items[tuning.valid.target_ptr[len(rows) // 2]:
                                    tuning.valid.target_ptr[len(rows) // 2 + 1]]
    want = split.valid.target_items[split.valid.target_ptr[r]:split.valid.target_ptr[r + 1]]
    assert np.array_equal(got, want)
    cfg = TrainingSettings(tune_users=n // 3)
    out = run_baselines(x, split, cfg)
    assert out["tifuknn/valid"]["users"] == out["popularity/valid"]["users"] == n
