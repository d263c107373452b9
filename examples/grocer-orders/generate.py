"""A simulated grocery order history with consumables: the benchmark data set of the session
(next-basket) protocol. The generator is the frozen artifact, not its output: the same seed and
sizes give the same bytes, so `python examples/grocer-orders/generate.py OUT_DIR` rebuilds what a
benchmark measured (`python -m bench.bench_training orders` names the sha256 of `orders.csv`).

    python examples/grocer-orders/generate.py OUT_DIR [--seed 2026] [--customers 2000]
                                               [--products 800] [--days 120]

Writes `OUT_DIR/orders.csv` (order_line, customer, product, ordered_at as ISO-8601 UTC, qty) and
`OUT_DIR/products.csv` (product, name, category), plain UTF-8 with commas.

What it models: the mechanisms that make real grocery logs repeat-heavy and periodic, each a
deliberately simple stand-in with its parameters in the code below, not something fitted to a
real shop's log.

- Consumables run out. 16 categories each have a base repurchase cycle in days (CATEGORIES:
  bread 3-5, fresh produce 4-7, dairy 5-9, drinks 7-14, sweets 7-21, frozen 10-20, pantry 20-40,
  drugstore 25-45, ...; the base is drawn once per category inside its range). A product's cycle
  is its category's base times lognormal(0, 0.2). Popularity is Zipf-like: weight 1 / rank^0.9
  over a random order of the products.
- Customers shop in trips. Each has a personal trip rate of 3-10 days; the gap to the next trip
  is 1 day plus an exponential draw with mean rate - 1 (a floor of 1 day: one trip a day at
  most), at a random minute between 08:00 and 20:59.
- Customers buy their staples. Each starts with 4-20 staples drawn by popularity weighted by a
  personal category taste (Dirichlet(0.5) over the categories), each with a personal cycle =
  product cycle * lognormal(0, 0.25). A staple is first bought on one of the customer's first
  four trip days (drawn at random); after that, at each trip, with a probability that rises with
  how due it is:
  p = sigmoid(3 * (elapsed / cycle - 1)) clipped to [0.02, 0.95], elapsed being the days since
  that customer last bought it.
- Customers explore a little. A basket gets 0-3 further items, each with probability 0.5 a
  complement of an item already in the basket (every product has 3 fixed complements, drawn by
  popularity) and otherwise a product drawn by popularity. An explored product that is not a
  staple becomes one with probability 0.15 (its cycle drawn as above); on every trip day (made
  or not) each staple is dropped with probability 0.01 (tastes drift, customers churn).
- A trip with nothing due is not made: exploration only rides along on a basket of staples, and
  an empty basket writes no order.

Not modelled: weekdays and seasons, prices and promotions, stock-outs, substitutes, household
events, new products, one-off shoppers; every customer orders from the start of the history. The
parameters are plausible, not calibrated, so figures measured on this log say how a method copes
with these mechanisms, not how it would do in a particular shop.

An order's lines share its minute: they are a few seconds apart (3 s, less in a basket of more
than 20 lines) from the order's minute, and trips are at least a day apart, so sessions cut at
30 minutes of inactivity give back exactly the orders. Quantities are 1 plus a Poisson(0.4)
draw. Order lines are numbered in time order (ties: customer, then place in the basket).

Only numpy's default_rng(seed) draws; its draws are in a fixed order (catalogue, customers one
by one, quantities), so the output depends on nothing but the arguments and numpy's version
(numpy does not promise the same Generator streams across versions: the project pins it, and the
benchmark names the sha256 it measured).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

START = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)
"""The first day of the history: fixed, and well in the past so no timestamp is in the future."""

# category: (base repurchase cycle range in days, product nouns for the names)
CATEGORIES: dict[str, tuple[tuple[float, float], tuple[str, ...]]] = {
    "bread & bakery": ((3, 5), ("sourdough loaf", "rolls", "baguette", "rye bread")),
    "fresh produce": ((4, 7), ("apples", "bananas", "tomatoes", "spinach", "carrots")),
    "dairy": ((5, 9), ("milk", "yoghurt", "butter", "quark", "cream")),
    "cheese": ((7, 14), ("gouda", "mozzarella", "feta", "cheddar")),
    "meat & fish": ((5, 10), ("chicken breast", "minced beef", "salmon", "ham")),
    "eggs": ((7, 12), ("eggs six-pack", "eggs ten-pack", "free-range eggs")),
    "drinks": ((7, 14), ("mineral water", "apple juice", "cola", "orange juice")),
    "coffee & tea": ((14, 28), ("ground coffee", "coffee beans", "black tea", "green tea")),
    "sweets": ((7, 21), ("chocolate", "gummy bears", "biscuits", "pralines")),
    "snacks": ((7, 18), ("crisps", "pretzels", "salted nuts", "crackers")),
    "breakfast": ((14, 25), ("muesli", "cornflakes", "jam", "honey")),
    "frozen": ((10, 20), ("frozen pizza", "frozen peas", "ice cream", "fish fingers")),
    "pantry": ((20, 40), ("pasta", "rice", "flour", "olive oil", "canned tomatoes")),
    "household": ((30, 60), ("dish soap", "kitchen roll", "laundry detergent", "bin bags")),
    "drugstore": ((25, 45), ("toothpaste", "shampoo", "soap", "shower gel")),
    "pet & baby": ((10, 20), ("cat food", "dog food", "nappies", "baby food")),
}
CATEGORY_NAMES = tuple(CATEGORIES)


@dataclass(frozen=True)
class Catalogue:
    """The products: category index, repurchase cycle (days), popularity, 3 complements each."""

    ids: list[str]
    names: list[str]
    category: np.ndarray  # (P,) int: index into CATEGORY_NAMES
    cycle: np.ndarray  # (P,) float days
    popularity: np.ndarray  # (P,) float, sums to 1
    complements: np.ndarray  # (P, 3) int


@dataclass(frozen=True)
class Orders:
    """Order lines in time order (the rows of orders.csv, before formatting)."""

    customer: np.ndarray  # (N,) int
    product: np.ndarray  # (N,) int
    at: np.ndarray  # (N,) datetime64[s], UTC
    qty: np.ndarray  # (N,) int


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_catalogue(rng: np.random.Generator, products: int) -> Catalogue:
    k = len(CATEGORIES)
    lo, hi = np.array([r for r, _ in CATEGORIES.values()], dtype=float).T
    base = rng.uniform(lo, hi)  # one base cycle per category
    category = rng.integers(0, k, products)
    cycle = base[category] * rng.lognormal(0.0, 0.2, products)
    rank = rng.permutation(products)  # product i has popularity rank rank[i]
    popularity = 1.0 / (rank + 1.0) ** 0.9
    popularity /= popularity.sum()
    complements = rng.choice(products, (products, 3), p=popularity)
    own = complements == np.arange(products)[:, None]
    complements[own] = (complements[own] + 1) % products  # never its own complement
    nth = np.zeros(k, dtype=int)
    names = []
    for c in category:
        nouns = CATEGORIES[CATEGORY_NAMES[c]][1]
        names.append(f"{nouns[nth[c] % len(nouns)]} {nth[c] // len(nouns) + 1}")
        nth[c] += 1
    ids = [f"P{i + 1:05d}" for i in range(products)]
    return Catalogue(ids, names, category, cycle, popularity, complements)


def simulate_customer(rng: np.random.Generator, cat: Catalogue, days: int
                      ) -> list[tuple[float, list[int]]]:
    """One customer's trips: (time in days since START, the products of its basket in order)."""
    n_products = len(cat.ids)
    taste = rng.dirichlet(np.full(len(CATEGORIES), 0.5))
    weight = cat.popularity * taste[cat.category]
    weight /= weight.sum()
    rate = rng.uniform(3.0, 10.0)
    n_staples = int(rng.integers(4, 21))
    staples = [int(p) for p in rng.choice(n_products, n_staples, replace=False, p=weight)]
    cycle = {p: cat.cycle[p] * rng.lognormal(0.0, 0.25) for p in staples}
    first_trip = {p: int(rng.integers(0, 4)) for p in staples}
    last: dict[int, float] = {}  # staple -> time of its last purchase (days)
    trips = []
    t = rng.uniform(0.0, rate)
    trip = 0
    while t < days and staples:
        at = np.floor(t) + rng.integers(8 * 60, 21 * 60) / (24 * 60)  # that day, 08:00-20:59
        due = []
        elapsed = np.array([at - last.get(p, at) for p in staples])
        length = np.array([cycle[p] for p in staples])
        prob = np.clip(sigmoid(3.0 * (elapsed / length - 1.0)), 0.02, 0.95)
        draw = rng.random(len(staples))
        for p, pr, u in zip(staples, prob, draw, strict=True):
            if p not in last:
                if first_trip[p] == trip:  # the staple's first purchase
                    due.append(p)
            elif u < pr:
                due.append(p)
        basket = list(due)
        if basket:
            for _ in range(int(rng.integers(0, 4))):
                if rng.random() < 0.5:
                    p = int(cat.complements[basket[rng.integers(len(basket))], rng.integers(3)])
                else:
                    p = int(rng.choice(n_products, p=cat.popularity))
                if p in basket:
                    continue
                basket.append(p)
                if p not in staples and rng.random() < 0.15:  # an explored item becomes a staple
                    staples.append(p)
                    cycle[p] = cat.cycle[p] * rng.lognormal(0.0, 0.25)
                    first_trip[p] = trip
            for p in basket:
                if p in staples:
                    last[p] = at
            trips.append((float(at), basket))
        dropped = rng.random(len(staples)) < 0.01
        staples = [p for p, d in zip(staples, dropped, strict=True) if not d]
        trip += 1
        t += 1.0 + rng.exponential(rate - 1.0)
    return trips


def simulate(seed: int = 2026, customers: int = 2000, products: int = 800, days: int = 120
             ) -> tuple[Catalogue, Orders]:
    rng = np.random.default_rng(seed)
    cat = make_catalogue(rng, products)
    cust, prod, minute, pos = [], [], [], []
    for c in range(customers):
        for at, basket in simulate_customer(rng, cat, days):
            m = int(round(at * 24 * 60))  # the order's minute since START
            cust += [c] * len(basket)
            prod += basket
            minute += [m] * len(basket)
            pos += range(len(basket))
    cust_a, prod_a = np.array(cust, dtype=int), np.array(prod, dtype=int)
    minute_a, pos_a = np.array(minute, dtype=np.int64), np.array(pos, dtype=np.int64)
    # lines a few seconds apart inside the order's minute: 3 s, less in a basket of 21+ lines
    n_lines = np.zeros_like(pos_a)
    if len(pos_a):
        starts = np.flatnonzero(pos_a == 0)
        lengths = np.diff(np.append(starts, len(pos_a)))
        n_lines = np.repeat(lengths, lengths)
    second = np.minimum(3 * pos_a, (59 * pos_a) // np.maximum(n_lines - 1, 1))
    at = (np.datetime64(START.replace(tzinfo=None), "s") + minute_a * 60 + second)
    order = np.lexsort((pos_a, cust_a, at))
    qty = 1 + rng.poisson(0.4, len(cust_a))
    return cat, Orders(cust_a[order], prod_a[order], at[order], qty[order])


def main(out_dir: Path, seed: int = 2026, customers: int = 2000, products: int = 800,
         days: int = 120) -> None:
    write(Path(out_dir), *simulate(seed, customers, products, days))


def write(out_dir: Path, cat: Catalogue, orders: Orders) -> None:
    """products.csv and orders.csv of a simulation (UTF-8, commas, \\n line ends)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "products.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["product", "name", "category"])
        for pid, name, c in zip(cat.ids, cat.names, cat.category, strict=True):
            w.writerow([pid, name, CATEGORY_NAMES[c]])
    stamps = np.char.add(np.datetime_as_string(orders.at, unit="s"), "Z")
    with (out_dir / "orders.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["order_line", "customer", "product", "ordered_at", "qty"])
        w.writerows(zip([f"L{i + 1:07d}" for i in range(len(stamps))],
                        [f"C{c + 1:05d}" for c in orders.customer.tolist()],
                        [cat.ids[p] for p in orders.product.tolist()],
                        stamps.tolist(), orders.qty.tolist(), strict=True))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--products", type=int, default=800)
    ap.add_argument("--days", type=int, default=120)
    a = ap.parse_args()
    main(a.out_dir, a.seed, a.customers, a.products, a.days)
