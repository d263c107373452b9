"""Simulator scales: sizes chosen so event counts land near the named targets."""

from __future__ import annotations

from dataclasses import dataclass

from shoprec.names import UsageError


@dataclass(frozen=True)
class Scale:
    name: str
    users: int            # users signed up before day 0
    items: int            # catalogue at day 0
    days: int
    sessions_per_day: int  # on an average weekday at day 0 (traffic grows with the user base)
    brands: int
    new_users_per_day: int
    new_items_per_day: int


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", users=1_500, items=800, days=30, sessions_per_day=300, brands=60,
                  new_users_per_day=10, new_items_per_day=3),
    "small": Scale("small", users=10_000, items=4_000, days=60, sessions_per_day=1_350,
                   brands=200, new_users_per_day=60, new_items_per_day=15),
    "large": Scale("large", users=200_000, items=50_000, days=90, sessions_per_day=17_300,
                   brands=1_200, new_users_per_day=800, new_items_per_day=150),
}


def get_scale(name: str) -> Scale:
    try:
        return SCALES[name]
    except KeyError:
        raise UsageError(f"unknown scale {name!r}; choose one of {sorted(SCALES)}") from None
