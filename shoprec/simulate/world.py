"""The simulated shop's static world: categories, brands, items and users with latent tastes.

Everything is drawn up front from the seed (items and users that arrive later carry their launch /
signup day), so a day's batch depends only on the seed and the days before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.simulate.behaviour import BEHAVIOUR, Behaviour
from shoprec.simulate.scales import Scale

# name, median price, consumable (bought again on a cycle), repurchase cycle in days
CATEGORIES: list[tuple[str, float, bool, int]] = [
    ("electronics", 180.0, False, 0), ("phone_accessories", 18.0, False, 0),
    ("computers", 650.0, False, 0), ("home_kitchen", 35.0, False, 0),
    ("furniture", 210.0, False, 0), ("fashion_women", 45.0, False, 0),
    ("fashion_men", 42.0, False, 0), ("shoes", 75.0, False, 0),
    ("sports_outdoor", 55.0, False, 0), ("toys", 25.0, False, 0),
    ("books", 14.0, False, 0), ("beauty", 16.0, True, 21),
    ("grocery", 6.0, True, 7), ("pet_supplies", 22.0, True, 14),
    ("baby", 20.0, True, 10), ("health", 12.0, True, 30),
]
# a purchase in the key category makes a next mission in the value category likely
COMPLEMENTS: dict[str, str] = {
    "electronics": "phone_accessories", "computers": "electronics", "furniture": "home_kitchen",
    "fashion_women": "shoes", "fashion_men": "shoes", "shoes": "sports_outdoor",
    "sports_outdoor": "health", "toys": "baby", "baby": "toys", "books": "toys",
    "phone_accessories": "electronics", "home_kitchen": "grocery", "beauty": "fashion_women",
    "grocery": "home_kitchen", "pet_supplies": "grocery", "health": "beauty",
}
COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "PL", "SE", "AT", "BE", "DK"])
COUNTRY_P = np.array([0.28, 0.18, 0.1, 0.1, 0.1, 0.08, 0.05, 0.04, 0.04, 0.03])
_SYLLABLES = ["ka", "lo", "mi", "ra", "zen", "vo", "tek", "nu", "sol", "bri", "dax", "elo",
              "fin", "gor", "hal", "ix", "jun", "kor", "lum", "nor", "pax", "qui", "ryn", "sta"]
_ADJECTIVES = ["Classic", "Pro", "Essential", "Premium", "Eco", "Smart", "Ultra", "Mini", "Max",
               "Daily", "Urban", "Comfort", "Active", "Pure", "Nova", "Prime"]


@dataclass
class World:
    """Arrays indexed by item / user position. Items are sorted by (category, brand) so each
    category and each (category, brand) pair is one contiguous slice of the catalogue."""

    cat_names: np.ndarray          # [C] str
    cat_price: np.ndarray          # [C] median price
    cat_cycle: np.ndarray          # [C] repurchase cycle in days, 0 = not consumable
    complement: np.ndarray         # [C] int
    brand_names: np.ndarray        # [B] str
    # items
    item_cat: np.ndarray           # [N] int16
    item_brand: np.ndarray         # [N] int32
    item_price: np.ndarray         # [N] float64
    item_launch_day: np.ndarray    # [N] int32 (negative: before the simulation starts)
    item_pop: np.ndarray           # [N] float64 long-tail base popularity
    item_trend: np.ndarray         # [N] float64 daily log-popularity drift
    item_title: np.ndarray         # [N] str
    cat_start: np.ndarray          # [C+1] slice bounds of each category in item order
    pair_start: np.ndarray         # [P+1] slice bounds of each (category, brand) pair
    cat_pair_start: np.ndarray     # [C+1] which pairs belong to each category
    item_complement: np.ndarray    # [N] int32 the accessory / follow-up item of each item
    # users (sorted by signup day, so the users signed up by day d are a prefix)
    user_signup_day: np.ndarray    # [U] int32
    user_taste: np.ndarray         # [U, C] float32 category preference (rows sum to 1)
    user_taste_cdf: np.ndarray     # [U, C] float32 cumulative taste, for vectorized sampling
    user_price_sens: np.ndarray    # [U] float32
    user_activity: np.ndarray      # [U] float64
    user_loyalty: np.ndarray       # [U] float32 brand loyalty in [0, 1]
    user_country: np.ndarray       # [U] str
    user_segment: np.ndarray       # [U] str

    @property
    def n_users(self) -> int:
        return len(self.user_signup_day)


def _brand_names(rng: np.random.Generator, n: int) -> np.ndarray:
    names: set[str] = set()
    out = []
    while len(out) < n:
        k = rng.integers(2, 4)
        name = "".join(rng.choice(_SYLLABLES, size=k)).capitalize()
        if name not in names:
            names.add(name)
            out.append(name)
    return np.array(out)


def build_world(scale: Scale, seed: int, behaviour: Behaviour = BEHAVIOUR) -> World:
    beh = behaviour
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0FFEE]))
    C = len(CATEGORIES)
    cat_names = np.array([c[0] for c in CATEGORIES])
    cat_price = np.array([c[1] for c in CATEGORIES])
    cat_cycle = np.array([c[3] for c in CATEGORIES], dtype=np.int32)
    index = {n: i for i, n in enumerate(cat_names)}
    complement = np.array([index[COMPLEMENTS[n]] for n in cat_names], dtype=np.int16)
    cat_weight = rng.dirichlet(np.full(C, 3.0))

    # brands: each has a home category and a price premium
    B = scale.brands
    brand_names = _brand_names(rng, B)
    brand_cat = rng.choice(C, size=B, p=cat_weight)
    brand_cat[:C] = np.arange(C)  # every category has at least one brand
    brand_premium = rng.lognormal(0.0, 0.35, size=B)

    # items: initial catalogue plus arrivals; category by weight, brand among the category's
    N = scale.items + scale.new_items_per_day * scale.days
    launch = np.concatenate([
        -rng.integers(1, 720, size=scale.items),
        np.repeat(np.arange(scale.days), scale.new_items_per_day),
    ]).astype(np.int32)
    item_cat = rng.choice(C, size=N, p=cat_weight).astype(np.int16)
    brands_of_cat = [np.flatnonzero(brand_cat == c) for c in range(C)]
    brand_zipf = [1.0 / np.arange(1, len(b) + 1) ** 0.8 for b in brands_of_cat]
    item_brand = np.empty(N, dtype=np.int32)
    for c in range(C):
        m = item_cat == c
        p = brand_zipf[c] / brand_zipf[c].sum()
        item_brand[m] = rng.choice(brands_of_cat[c], size=int(m.sum()), p=p)
    item_price = np.round(
        cat_price[item_cat] * brand_premium[item_brand] * rng.lognormal(0.0, 0.45, size=N), 2
    ).clip(0.5, None)
    # long tail: Zipf-like over a random rank, new items get a fresh draw too
    ranks = rng.permutation(N) + 1
    item_pop = 1.0 / ranks**beh.popularity_exponent
    item_trend = rng.normal(0.0, beh.trend_sd, size=N)

    order = np.lexsort((item_brand, item_cat))
    item_cat, item_brand, item_price = item_cat[order], item_brand[order], item_price[order]
    launch, item_pop, item_trend = launch[order], item_pop[order], item_trend[order]
    cat_start = np.searchsorted(item_cat, np.arange(C + 1)).astype(np.int64)
    pair_key = item_cat.astype(np.int64) * B + item_brand
    change = np.flatnonzero(np.diff(pair_key)) + 1
    pair_start = np.concatenate([[0], change, [N]]).astype(np.int64)
    pair_cat = item_cat[pair_start[:-1]]
    cat_pair_start = np.searchsorted(pair_cat, np.arange(C + 1)).astype(np.int64)
    # item-level complements: a fixed follow-up item in the complement category (the case for
    # the phone you bought, the food for the bowl), drawn by popularity
    comp_cat = complement[item_cat]
    item_complement = np.empty(N, np.int32)
    for c in range(C):
        lo, hi = cat_start[c], cat_start[c + 1]
        m = comp_cat == c
        p = item_pop[lo:hi] / item_pop[lo:hi].sum()
        item_complement[m] = lo + rng.choice(hi - lo, size=int(m.sum()), p=p)
    adj = rng.choice(_ADJECTIVES, size=N)
    title = np.char.add(np.char.add(np.char.add(brand_names[item_brand], " "), adj),
                        np.char.add(" ", np.char.replace(cat_names[item_cat], "_", " ")))
    title = np.char.add(np.char.add(title, " "), (np.arange(N) % 97 + 1).astype(str))

    # users: concentrated tastes (Dirichlet < 1), heavy-tailed activity
    U = scale.users + scale.new_users_per_day * scale.days
    signup = np.concatenate([
        -rng.integers(1, 1000, size=scale.users),
        np.repeat(np.arange(scale.days), scale.new_users_per_day),
    ]).astype(np.int32)
    signup.sort(kind="stable")
    taste = rng.dirichlet(np.full(C, beh.taste_concentration), size=U).astype(np.float32)
    # everyone browses a little
    taste = (1 - beh.browse_share) * taste + beh.browse_share * cat_weight.astype(np.float32)
    taste_cdf = np.cumsum(taste, axis=1)
    taste_cdf[:, -1] = 1.0
    activity = rng.lognormal(0.0, beh.activity_sd, size=U)
    q = np.quantile(activity, [0.5, 0.9])
    segment = np.where(activity > q[1], "power", np.where(activity > q[0], "regular", "casual"))

    return World(
        cat_names=cat_names, cat_price=cat_price, cat_cycle=cat_cycle, complement=complement,
        brand_names=brand_names, item_cat=item_cat, item_brand=item_brand, item_price=item_price,
        item_launch_day=launch, item_pop=item_pop, item_trend=item_trend, item_title=title,
        cat_start=cat_start, pair_start=pair_start, cat_pair_start=cat_pair_start,
        item_complement=item_complement,
        user_signup_day=signup, user_taste=taste, user_taste_cdf=taste_cdf,
        user_price_sens=rng.lognormal(0.0, beh.price_sens_sd, size=U).astype(np.float32),
        user_activity=activity, user_loyalty=rng.beta(*beh.loyalty_beta, size=U).astype(np.float32),
        user_country=rng.choice(COUNTRIES, size=U, p=COUNTRY_P), user_segment=segment,
    )
