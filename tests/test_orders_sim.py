"""The simulated grocery order history (examples/grocer-orders/generate.py): frozen by its seed,
in the documented shape, repeat-heavy, and periodic with each product's repurchase cycle."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

GENERATOR = Path(__file__).resolve().parents[1] / "examples" / "grocer-orders" / "generate.py"
SIZE = {"customers": 100, "products": 150, "days": 90}


def _load():
    spec = importlib.util.spec_from_file_location("grocer_orders_generate", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


gen = _load()


@pytest.fixture(scope="module")
def sim():
    return gen.simulate(seed=11, **SIZE)


@pytest.fixture(scope="module")
def out(sim, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("orders-a")
    gen.write(d, *sim)
    return d


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_seed_same_bytes_other_seed_other_bytes(out, tmp_path):
    gen.main(tmp_path / "b", seed=11, **SIZE)  # a second simulation, from scratch
    for name in ("orders.csv", "products.csv"):
        assert (tmp_path / "b" / name).read_bytes() == (out / name).read_bytes(), name
    gen.main(tmp_path / "c", seed=12, customers=30, products=150, days=30)
    assert (tmp_path / "c" / "orders.csv").read_bytes() != (out / "orders.csv").read_bytes()


def test_schema(out):
    with (out / "orders.csv").open(encoding="utf-8") as fh:
        assert fh.readline().rstrip("\n") == "order_line,customer,product,ordered_at,qty"
    with (out / "products.csv").open(encoding="utf-8") as fh:
        assert fh.readline().rstrip("\n") == "product,name,category"
    products = _rows(out / "products.csv")
    assert len(products) == SIZE["products"]
    assert len({p["product"] for p in products}) == SIZE["products"]
    assert {p["category"] for p in products} <= set(gen.CATEGORY_NAMES)
    assert len(gen.CATEGORY_NAMES) == 16
    assert all(p["name"] for p in products)

    orders = _rows(out / "orders.csv")
    assert len(orders) > 1000
    assert len({o["order_line"] for o in orders}) == len(orders)
    assert {o["product"] for o in orders} <= {p["product"] for p in products}
    assert len({o["customer"] for o in orders}) <= SIZE["customers"]
    assert all(int(o["qty"]) >= 1 for o in orders)
    at = [dt.datetime.fromisoformat(o["ordered_at"]) for o in orders]
    assert all(o["ordered_at"].endswith("Z") for o in orders)
    assert all(t.tzinfo is not None and t.utcoffset() == dt.timedelta(0) for t in at)
    assert at == sorted(at)  # lines in time order, numbered in it
    assert at[0] >= gen.START and at[-1] < gen.START + dt.timedelta(days=SIZE["days"] + 1)


def test_orders_are_sessions(out):
    """An order's lines share a minute, a few seconds apart; a customer's orders are at least a
    day apart, so a 30-minute inactivity gap cuts exactly the orders."""
    by_customer: dict[str, list[dt.datetime]] = {}
    for o in _rows(out / "orders.csv"):
        by_customer.setdefault(o["customer"], []).append(dt.datetime.fromisoformat(o["ordered_at"]))
    for ts in by_customer.values():
        gaps = np.diff([t.timestamp() for t in ts])
        within = gaps[gaps < 30 * 60]
        assert (within <= 3).all() and (within > 0).all()
        assert (gaps[gaps >= 30 * 60] >= 11 * 3600).all()  # other days, 08:00-20:59
        minutes = {t.replace(second=0) for t in ts}
        orders = 1 + int((gaps >= 30 * 60).sum())
        assert len(minutes) == orders


def test_repeat_heavy(out):
    seen: set[tuple[str, str]] = set()
    repeats = 0
    orders = _rows(out / "orders.csv")
    for o in orders:
        key = (o["customer"], o["product"])
        repeats += key in seen
        seen.add(key)
    assert repeats / len(orders) > 0.5


def test_repurchase_follows_the_product_cycle(sim):
    """For a customer's staples (bought on 4+ days) the median gap between purchases rises with
    the product's cycle: rank correlation well above chance."""
    cat, orders = sim
    days = orders.at.astype("int64") // 86_400
    bought: dict[tuple[int, int], list[int]] = {}
    for c, p, d in zip(orders.customer.tolist(), orders.product.tolist(), days.tolist(),
                       strict=True):
        bought.setdefault((c, p), []).append(d)
    cycle, gap = [], []
    for (_, p), d in bought.items():
        d = np.unique(d)
        if len(d) >= 4:
            cycle.append(cat.cycle[p])
            gap.append(float(np.median(np.diff(d))))
    assert len(cycle) > 200

    def rank(v):
        return np.argsort(np.argsort(v, kind="stable"), kind="stable")

    rho = np.corrcoef(rank(np.array(cycle)), rank(np.array(gap)))[0, 1]
    assert rho > 0.4, rho
    # and the gaps are of the cycles' size, not of the trip rate alone
    ratio = np.median(np.array(gap) / np.array(cycle))
    assert 0.5 < ratio < 2.0, ratio
