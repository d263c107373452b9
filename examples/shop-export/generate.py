"""Write the example shop export (a grocer's order history) the README's "Bring your own data"
walks through. Run once; the CSVs are committed so the example needs nothing but the repo.

The files look like what a small shop's back office exports, not like the contract: German
column names, `;` and latin-1 for the order and product lists, epoch milliseconds, no prices, no
brands, no sessions, purchases only, and customers with a signup date and a country.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CATEGORIES = ["Obst & Gemüse", "Molkerei & Käse", "Brot & Backwaren", "Getränke", "Süßwaren",
              "Drogerie", "Tiefkühl", "Vorrat"]
NAMES = ["Äpfel", "Bananen", "Milch", "Gouda", "Brötchen", "Mineralwasser", "Schokolade",
         "Zahnpasta", "Spinat", "Kaffee", "Crème fraîche", "Joghurt", "Müsli", "Nudeln", "Reis",
         "Tomaten", "Butter", "Quark", "Apfelsaft", "Seife"]


def main(seed: int = 7, customers: int = 240, products: int = 160, days: int = 120) -> None:
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    ids = [f"{i:06d}" for i in rng.choice(999_999, products, replace=False)]  # leading zeros
    cats = rng.integers(0, len(CATEGORIES), products)
    with (HERE / "products.csv").open("w", encoding="latin-1", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["Artikelnr", "Bezeichnung", "Warengruppe", "Lieferant"])
        for i, pid in enumerate(ids):
            name = f"{NAMES[i % len(NAMES)]} {i // len(NAMES) + 1}"
            w.writerow([pid, name, CATEGORIES[cats[i]], f"L{rng.integers(1, 20):02d}"])
    popularity = rng.zipf(1.6, products).astype(float)
    popularity /= popularity.sum()
    rows, line = [], 0
    with (HERE / "customers.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_no", "registered", "country", "newsletter"])
        for c in range(customers):
            cid = f"K{c + 1:05d}"
            signup = start - dt.timedelta(days=int(rng.integers(1, 400)))
            w.writerow([cid, signup.date().isoformat(), rng.choice(["DE", "AT", "CH"]),
                        rng.choice(["ja", "nein"])])
            if rng.random() < 0.08:
                continue  # a customer who never ordered
            staples = rng.choice(products, int(rng.integers(3, 9)), replace=False, p=popularity)
            t = start + dt.timedelta(hours=float(rng.uniform(0, 24 * 14)))
            for _ in range(int(rng.integers(2, 11))):
                basket = set(rng.choice(staples, int(rng.integers(1, 4)), replace=False))
                basket |= set(rng.choice(products, int(rng.integers(0, 3)), p=popularity))
                for k, p in enumerate(sorted(basket)):
                    line += 1
                    at = t + dt.timedelta(seconds=20 * k)
                    rows.append([f"{100000 + line}", cid, ids[p],
                                 int(at.timestamp() * 1000), int(rng.integers(1, 4))])
                t += dt.timedelta(days=float(rng.exponential(9)) + 0.5)
                if t > start + dt.timedelta(days=days):
                    break
    rows.sort(key=lambda r: r[3])
    with (HERE / "orders.csv").open("w", encoding="latin-1", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["Position", "Kundennr", "Artikelnr", "Zeitpunkt", "Menge"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
