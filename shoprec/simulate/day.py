"""One simulated day of shop traffic, vectorized over all of the day's sessions.

Behaviour model (each piece exists so that a recommender has something real to learn):
- a session has a *mission* category: the user's taste, or the complement of their last purchase;
- views inside a session pick items by long-tail popularity (with trends and novelty), by the
  user's favourite brand in that category, or as a near neighbour of the previous item;
- the funnel view → click → add_to_cart → purchase advances with probabilities driven by the
  user's affinity for the category and their price sensitivity against the item's price;
- consumables are bought again on a cycle; new users arrive daily and start cold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.simulate.world import World

SECONDS_PER_DAY = 86_400
# Monday..Sunday traffic and a 24 h profile with a lunch bump and an evening peak
WEEKLY = np.array([0.95, 0.92, 0.94, 0.97, 1.04, 1.13, 1.05])
HOURLY = np.array([0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.5, 0.9, 1.1, 1.2, 1.25, 1.35, 1.5, 1.4,
                   1.25, 1.2, 1.25, 1.4, 1.7, 2.0, 2.2, 2.1, 1.6, 1.0])
HOUR_CDF = np.cumsum(HOURLY / HOURLY.sum())
VIEW, CLICK, CART, PURCHASE = 0, 1, 2, 3


@dataclass
class UserState:
    """What a user carries from one day to the next."""

    last_item: np.ndarray       # last viewed item, -1 = none
    last_buy: np.ndarray        # last purchased item, -1 = none
    rebuy_item: np.ndarray      # consumable due for repurchase, -1 = none
    rebuy_day: np.ndarray       # day it is due

    @classmethod
    def empty(cls, n_users: int) -> UserState:
        return cls(np.full(n_users, -1, np.int32), np.full(n_users, -1, np.int32),
                   np.full(n_users, -1, np.int32), np.full(n_users, -1, np.int32))


@dataclass
class DayEvents:
    """Column arrays of one day's events, sorted by time (type breaks ties in funnel order)."""

    seconds: np.ndarray   # float64 seconds since the simulation start
    user: np.ndarray      # int32
    item: np.ndarray      # int32
    etype: np.ndarray     # int8
    session: np.ndarray   # int64 day-local session number
    price: np.ndarray     # float64
    quantity: np.ndarray  # int32, 0 = not applicable

    def __len__(self) -> int:
        return len(self.seconds)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class DayGenerator:
    def __init__(self, world: World, base_sessions: int, start_weekday: int):
        self.w = world
        self.base_sessions = base_sessions
        self.start_weekday = start_weekday
        self.state = UserState.empty(world.n_users)
        self.activity_cdf = np.cumsum(world.user_activity)
        self.users_day0 = int(np.searchsorted(world.user_signup_day, 0, side="right"))
        n_pairs_in_cat = np.diff(world.cat_pair_start)
        self.n_pairs_in_cat = np.maximum(n_pairs_in_cat, 1)

    # --- sampling helpers -------------------------------------------------------------------
    def _pick(self, cum: np.ndarray, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Weighted pick inside item slices [lo, hi) using one global cumulative weight array."""
        base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        top = cum[hi - 1]
        idx = np.searchsorted(cum, base + u * (top - base), side="right")
        return np.clip(idx, lo, hi - 1)

    def generate(self, d: int, rng: np.random.Generator) -> DayEvents:
        w, st = self.w, self.state
        C = len(w.cat_names)

        # item weights today: long tail × trend × novelty; unlaunched items weigh nothing
        age = d - w.item_launch_day
        weight = w.item_pop * np.exp(np.clip(w.item_trend * d, -3, 3)) * (
            1.0 + 4.0 * np.exp(-np.maximum(age, 0) / 7.0))
        weight[age < 0] = 0.0
        cum = np.cumsum(weight)
        cat_mass = cum[w.cat_start[1:] - 1] - np.where(w.cat_start[:-1] > 0,
                                                        cum[w.cat_start[:-1] - 1], 0)

        # who shops today: active users by activity, every new user once, consumables due
        n_avail = int(np.searchsorted(w.user_signup_day, d, side="right"))
        growth = n_avail / max(self.users_day0, 1)
        lam = self.base_sessions * WEEKLY[(self.start_weekday + d) % 7] * growth ** 0.9
        n_regular = rng.poisson(lam)
        users = np.searchsorted(self.activity_cdf,
                                rng.random(n_regular) * self.activity_cdf[n_avail - 1],
                                side="right").astype(np.int32)
        new_users = np.flatnonzero(w.user_signup_day == d).astype(np.int32)
        rebuyers = np.flatnonzero((st.rebuy_day == d) & (st.rebuy_item >= 0)).astype(np.int32)
        users = np.concatenate([users, new_users, rebuyers])
        S = len(users)
        is_rebuy = np.zeros(S, bool)
        is_rebuy[S - len(rebuyers):] = True
        st.rebuy_day[rebuyers] = -1

        hour = np.searchsorted(HOUR_CDF, rng.random(S), side="right").clip(0, 23)
        start = d * SECONDS_PER_DAY + hour * 3600.0 + rng.random(S) * 3600.0

        # mission: complement of the last purchase, else drawn from taste
        taste_pick = (w.user_taste_cdf[users] < rng.random((S, 1))).sum(1).clip(0, C - 1)
        last_buy = st.last_buy[users]
        use_comp = (last_buy >= 0) & (rng.random(S) < 0.35)
        comp_item = w.item_complement[np.maximum(last_buy, 0)]
        mission = np.where(use_comp, w.item_cat[comp_item], taste_pick)
        lengths = np.minimum(rng.geometric(0.27, size=S), 25)
        lengths[is_rebuy] = np.minimum(lengths[is_rebuy], 2)
        mission[is_rebuy] = w.item_cat[st.rebuy_item[users[is_rebuy]]]

        # views, position by position (each position vectorized over all sessions)
        V = int(lengths.sum())
        sess_of_view = np.repeat(np.arange(S), lengths)
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        item = np.empty(V, np.int32)
        # how each view was picked: 0 popular, 1 brand, 2 neighbour, 3 resume, 4 rebuy, 5 complement
        how = np.zeros(V, np.int8)
        prev = np.full(S, -1, np.int64)
        loyalty = w.user_loyalty[users]
        for j in range(int(lengths.max(initial=0))):
            act = np.flatnonzero(lengths > j)
            vidx = first[act] + j
            u = users[act]
            n = len(act)
            cat = np.where(rng.random(n) < 0.85, mission[act],
                           (w.user_taste_cdf[u] < rng.random((n, 1))).sum(1).clip(0, C - 1))
            cat = np.where(cat_mass[cat] > 0, cat, mission[act])
            lo, hi = w.cat_start[cat], w.cat_start[cat + 1]
            chosen = self._pick(cum, lo, hi, rng.random(n))
            mode = np.zeros(n, np.int8)
            r = rng.random(n)
            # favourite brand in this category: a stable hash of (user, category)
            pair = w.cat_pair_start[cat] + (u.astype(np.int64) * 2654435761 + cat * 97) \
                % self.n_pairs_in_cat[cat]
            plo, phi = w.pair_start[pair], w.pair_start[pair + 1]
            brand_pick = self._pick(cum, plo, phi, rng.random(n))
            ok = (r < 0.15 + 0.6 * loyalty[act]) & (weight[brand_pick] > 0)
            chosen = np.where(ok, brand_pick, chosen)
            mode[ok] = 1
            if j > 0:
                p = prev[act]
                pc_ = w.item_cat[p]
                nb = np.clip(p + rng.integers(-4, 5, size=n), w.cat_start[pc_],
                             w.cat_start[pc_ + 1] - 1)
                ok = (rng.random(n) < 0.35) & (weight[nb] > 0)
                chosen = np.where(ok, nb, chosen)
                mode[ok] = 2
            else:
                li = st.last_item[u]
                ok = (li >= 0) & (rng.random(n) < 0.2)
                chosen = np.where(ok, li, chosen)
                mode[ok] = 3
                ci = comp_item[act]
                ok = use_comp[act] & (rng.random(n) < 0.6) & (weight[ci] > 0)
                chosen = np.where(ok, ci, chosen)
                mode[ok] = 5
                rb = is_rebuy[act]
                chosen = np.where(rb, st.rebuy_item[u], chosen)
                mode[rb] = 4
            item[vidx] = chosen
            how[vidx] = mode
            prev[act] = chosen

        # funnel, driven by affinity and price sensitivity
        vu = users[sess_of_view]
        icat = w.item_cat[item]
        aff = np.log(w.user_taste[vu, icat] * C + 0.05)
        price = w.item_price[item]
        discount = np.where(rng.random(V) < 0.12, rng.uniform(0.1, 0.3, V), 0.0)
        paid = np.round(price * (1.0 - discount), 2)
        rel = np.log(paid / w.cat_price[icat])
        sens = w.user_price_sens[vu]
        rebuy_v = how == 4
        p_click = np.where(rebuy_v, 0.9, _sigmoid(-1.8 + 0.45 * aff - 0.5 * sens * rel
                                                  + 0.4 * (how == 1) + 0.8 * (how == 5)
                                                  + 3.0 * discount))
        clicked = rng.random(V) < p_click
        p_cart = np.where(rebuy_v, 0.85, _sigmoid(-1.1 + 0.35 * aff - 0.7 * sens * rel))
        carted = clicked & (rng.random(V) < p_cart)
        p_buy = np.where(rebuy_v, 0.85, _sigmoid(0.1 + 0.3 * aff - 0.8 * sens * rel))
        bought = carted & (rng.random(V) < p_buy)

        gaps = rng.exponential(45.0, V)
        gaps[first] = 0.0
        t_view = start[sess_of_view] + _segment_cumsum(gaps, first, lengths)
        t_click = t_view + 1.0 + rng.exponential(8.0, V)
        t_cart = t_click + 1.0 + rng.exponential(30.0, V)
        t_buy = t_cart + 5.0 + rng.exponential(120.0, V)
        consumable = w.cat_cycle[icat] > 0
        qty = np.where(consumable, 1 + rng.poisson(0.6, V), 1).astype(np.int32)

        parts = [(np.ones(V, bool), t_view, VIEW), (clicked, t_click, CLICK),
                 (carted, t_cart, CART), (bought, t_buy, PURCHASE)]
        sec = np.concatenate([t[m] for m, t, _ in parts])
        et = np.concatenate([np.full(int(m.sum()), code, np.int8) for m, _, code in parts])
        src = np.concatenate([np.flatnonzero(m) for m, _, _ in parts])
        order = np.lexsort((et, sec))
        sec, et, src = sec[order], et[order], src[order]
        ev = DayEvents(seconds=sec, user=vu[src].astype(np.int32), item=item[src],
                       etype=et, session=sess_of_view[src].astype(np.int64), price=paid[src],
                       quantity=np.where(et >= CART, qty[src], 0).astype(np.int32))

        self._update_state(d, rng, ev, w)
        return ev

    def _update_state(self, d: int, rng: np.random.Generator, ev: DayEvents, w: World) -> None:
        st = self.state
        views = ev.etype == VIEW
        st.last_item[ev.user[views]] = ev.item[views]  # fancy assignment keeps the last (latest)
        buys = ev.etype == PURCHASE
        bu, bi = ev.user[buys], ev.item[buys]
        bc = w.item_cat[bi]
        st.last_buy[bu] = bi
        cyc = w.cat_cycle[bc]
        cons = cyc > 0
        due = d + np.maximum(1, np.round(cyc[cons] * rng.lognormal(0.0, 0.25, int(cons.sum()))))
        st.rebuy_item[bu[cons]] = bi[cons]
        st.rebuy_day[bu[cons]] = due.astype(np.int32)


def _segment_cumsum(x: np.ndarray, first: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each segment start."""
    c = np.cumsum(x)
    offset = np.repeat(c[first] - x[first], lengths)
    return c - offset
