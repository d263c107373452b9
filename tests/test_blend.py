"""The promoted recommender: the model fused with the best-validating baseline, on validation."""

from __future__ import annotations

import numpy as np
import torch

from training.blend import Blend, fit_blend, ranks
from training.splits import EvalSet


def _eval_set(targets: list[int]) -> EvalSet:
    n = len(targets)
    z = np.zeros(n, dtype=np.int64)
    return EvalSet("valid", np.arange(n), z, np.arange(n + 1), np.array(targets),
                   np.zeros(n + 1, dtype=np.int64), np.empty(0, dtype=np.int64), z)


def test_ranks_are_positions_in_the_sorted_row() -> None:
    r = ranks(torch.tensor([[0.1, 0.9, 0.5], [3.0, 3.0, 1.0]]))
    assert r.tolist() == [[2, 0, 1], [0, 1, 2]]  # a tie goes to the lower index


def test_the_blend_takes_what_each_side_knows_and_validation_picks_the_weight() -> None:
    n_items = 25
    es = _eval_set([1, 2, 1, 2])  # users 0 and 2 want item 1, users 1 and 3 item 2

    def model(e, rows):  # knows item 1 (ranks it first), puts item 2 last
        s = torch.arange(n_items + 1, dtype=torch.float32).flip(0).expand(len(rows), -1).clone()
        s[:, 1], s[:, 2] = 100.0, -100.0
        return s

    def baseline(e, rows):  # knows item 2, puts item 1 second
        s = torch.zeros(len(rows), n_items + 1)
        s[:, 2], s[:, 1] = 10.0, 5.0
        return s

    def weak(e, rows):
        return torch.zeros(len(rows), n_items + 1)

    blend, m = fit_blend(model, {"freq": baseline, "weak": weak},
                         {"freq": {"ndcg@10": 0.5}, "weak": {"ndcg@10": 0.0}}, es, n_items,
                         (10, 20))
    assert blend.baseline_name == "freq" and 0.0 < blend.weight < 1.0
    assert m["hit@10"] == 1.0  # both targets in every top 10
    top2 = blend(es, np.arange(4)).topk(2, dim=1).indices
    assert {int(i) for i in top2[0]} == {1, 2}
    assert Blend(model, baseline, "freq", 1.0)(es, np.arange(1)).argmax() == 1  # the model alone
