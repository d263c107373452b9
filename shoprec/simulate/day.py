"""One simulated day of shop traffic, vectorized over all of the day's sessions.

Behaviour model (each piece exists so that a recommender has something real to learn):
- a session has a *mission* category: the user's taste, or the complement of their last purchase;
- views inside a session pick items by long-tail popularity (with trends and novelty), by the
  user's favourite brand in that category, or as a near neighbour of the previous item;
- the funnel view → click → add_to_cart → purchase advances with probabilities driven by the
  user's affinity for the category and their price sensitivity against the item's price;
- consumables are bought again on a cycle; new users arrive daily and start cold.

The knobs live in `Behaviour`. Same seed → same bytes: every phase below draws from the day's
generator in a fixed order, so reordering draws (or phases) changes the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.simulate.behaviour import BEHAVIOUR, Behaviour
from shoprec.simulate.world import World

SECONDS_PER_DAY = 86_400
VIEW, CLICK, CART, PURCHASE = 0, 1, 2, 3
# How a view's item was picked. A later rule overrides an earlier one, so NEIGHBOUR and RESUME
# matter even though only BRAND, REBUY and COMPLEMENT change the funnel odds.
POPULAR, BRAND, NEIGHBOUR, RESUME, REBUY, COMPLEMENT = range(6)


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


@dataclass
class Shelf:
    """Today's item weights: long tail × trend × novelty; unlaunched items weigh nothing."""

    weight: np.ndarray    # [N] per item
    cum: np.ndarray       # [N] cumulative weight, for weighted picks inside item slices
    cat_mass: np.ndarray  # [C] total weight per category (0: nothing launched there yet)

    def pick(self, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Weighted pick inside item slices [lo, hi), one uniform draw `u` per slice."""
        cum = self.cum
        base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        top = cum[hi - 1]
        idx = np.searchsorted(cum, base + u * (top - base), side="right")
        return np.clip(idx, lo, hi - 1)


@dataclass
class Sessions:
    """Today's sessions (one row each) and where their views sit in the day's view arrays."""

    user: np.ndarray       # [S] int32
    is_rebuy: np.ndarray   # [S] bool: started because a consumable fell due
    start: np.ndarray      # [S] float64 seconds since the simulation start
    mission: np.ndarray    # [S] category the session is about
    use_comp: np.ndarray   # [S] bool: the mission is the complement of the last purchase
    comp_item: np.ndarray  # [S] complement item of the last purchase (meaningful if use_comp)
    length: np.ndarray     # [S] number of views
    first: np.ndarray      # [S] index of the session's first view
    of_view: np.ndarray    # [V] session of each view

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class Views:
    """Every view of the day with the price shown and how far down the funnel it went."""

    item: np.ndarray      # [V] int32
    how: np.ndarray       # [V] int8 POPULAR .. COMPLEMENT
    discount: np.ndarray  # [V] share taken off the list price, 0 = none
    paid: np.ndarray      # [V] price shown (and paid, if bought)
    clicked: np.ndarray   # [V] bool
    carted: np.ndarray    # [V] bool
    bought: np.ndarray    # [V] bool


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _segment_cumsum(x: np.ndarray, first: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each segment start."""
    c = np.cumsum(x)
    offset = np.repeat(c[first] - x[first], lengths)
    return c - offset


def _override(chosen: np.ndarray, mode: np.ndarray, ok: np.ndarray, candidate: np.ndarray,
              code: int) -> np.ndarray:
    """Replace the pick where `ok`, recording why in `mode` (in place); returns the new picks."""
    mode[ok] = code
    return np.where(ok, candidate, chosen)


class DayGenerator:
    """Generates day after day for one world, carrying each user's state between days."""

    def __init__(self, world: World, base_sessions: int, start_weekday: int,
                 behaviour: Behaviour = BEHAVIOUR):
        self.w = world
        self.b = behaviour
        self.base_sessions = base_sessions
        self.start_weekday = start_weekday
        self.state = UserState.empty(world.n_users)
        self.activity_cdf = np.cumsum(world.user_activity)
        self.users_day0 = int(np.searchsorted(world.user_signup_day, 0, side="right"))
        self.n_pairs_in_cat = np.maximum(np.diff(world.cat_pair_start), 1)
        self.weekly = np.array(behaviour.weekly)
        hourly = np.array(behaviour.hourly)
        self.hour_cdf = np.cumsum(hourly / hourly.sum())

    def generate(self, d: int, rng: np.random.Generator) -> DayEvents:
        """Day `d`'s events; advances the users' state. Call once per day, in day order."""
        shelf = self._shelf(d)
        users, is_rebuy = self._shoppers(d, rng)
        s = self._sessions(d, users, is_rebuy, rng)
        item, how = self._browse(s, shelf, rng)
        views = self._funnel(s, item, how, rng)
        ev = self._events(s, views, rng)
        self._update_state(d, ev, rng)
        return ev

    # --- phase 1: what is on the shelf today ---------------------------------------------------
    def _shelf(self, d: int) -> Shelf:
        w, b = self.w, self.b
        age = d - w.item_launch_day
        weight = w.item_pop * np.exp(np.clip(w.item_trend * d, -b.trend_cap, b.trend_cap)) * (
            1.0 + b.novelty_boost * np.exp(-np.maximum(age, 0) / b.novelty_days))
        weight[age < 0] = 0.0
        cum = np.cumsum(weight)
        cat_mass = cum[w.cat_start[1:] - 1] - np.where(w.cat_start[:-1] > 0,
                                                        cum[w.cat_start[:-1] - 1], 0)
        return Shelf(weight, cum, cat_mass)

    # --- phase 2: who shops today --------------------------------------------------------------
    def _shoppers(self, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One user per session: regulars by activity, every new user once, consumables due
        (last, flagged by the returned mask; their due date is consumed)."""
        w, st = self.w, self.state
        n_avail = int(np.searchsorted(w.user_signup_day, d, side="right"))
        growth = n_avail / max(self.users_day0, 1)
        lam = (self.base_sessions * self.weekly[(self.start_weekday + d) % 7]
               * growth ** self.b.growth_exponent)
        n_regular = rng.poisson(lam)
        regulars = np.searchsorted(self.activity_cdf,
                                   rng.random(n_regular) * self.activity_cdf[n_avail - 1],
                                   side="right").astype(np.int32)
        new_users = np.flatnonzero(w.user_signup_day == d).astype(np.int32)
        rebuyers = np.flatnonzero((st.rebuy_day == d) & (st.rebuy_item >= 0)).astype(np.int32)
        users = np.concatenate([regulars, new_users, rebuyers])
        is_rebuy = np.zeros(len(users), bool)
        is_rebuy[len(users) - len(rebuyers):] = True
        st.rebuy_day[rebuyers] = -1
        return users, is_rebuy

    # --- phase 3: when each session starts, what it is about, how long it runs -----------------
    def _sessions(self, d: int, users: np.ndarray, is_rebuy: np.ndarray,
                  rng: np.random.Generator) -> Sessions:
        w, st, b = self.w, self.state, self.b
        S = len(users)
        hour = np.searchsorted(self.hour_cdf, rng.random(S), side="right").clip(0, 23)
        start = d * SECONDS_PER_DAY + hour * 3600.0 + rng.random(S) * 3600.0
        # mission: complement of the last purchase, else drawn from taste; a rebuy's is its item's
        taste_pick = self._taste_category(users, rng)
        last_buy = st.last_buy[users]
        use_comp = (last_buy >= 0) & (rng.random(S) < b.p_complement_mission)
        comp_item = w.item_complement[np.maximum(last_buy, 0)]
        mission = np.where(use_comp, w.item_cat[comp_item], taste_pick)
        length = np.minimum(rng.geometric(b.session_end, size=S), b.max_views)
        length[is_rebuy] = np.minimum(length[is_rebuy], b.max_rebuy_views)
        mission[is_rebuy] = w.item_cat[st.rebuy_item[users[is_rebuy]]]
        return Sessions(user=users, is_rebuy=is_rebuy, start=start, mission=mission,
                        use_comp=use_comp, comp_item=comp_item, length=length,
                        first=np.concatenate([[0], np.cumsum(length)[:-1]]),
                        of_view=np.repeat(np.arange(S), length))

    def _taste_category(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A category per user, drawn from their taste."""
        C = len(self.w.cat_names)
        return (self.w.user_taste_cdf[users] < rng.random((len(users), 1))).sum(1).clip(0, C - 1)

    # --- phase 4: which item each view shows ---------------------------------------------------
    def _browse(self, s: Sessions, shelf: Shelf,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Items and pick modes of all views, position by position (each position vectorized
        over the sessions still running), since a view may depend on the one before it."""
        V = int(s.length.sum())
        item = np.empty(V, np.int32)
        how = np.zeros(V, np.int8)
        prev = np.full(len(s), -1, np.int64)
        for j in range(int(s.length.max(initial=0))):
            act = np.flatnonzero(s.length > j)
            chosen, mode = self._pick_view(j, act, s, shelf, prev[act], rng)
            vidx = s.first[act] + j
            item[vidx] = chosen
            how[vidx] = mode
            prev[act] = chosen
        return item, how

    def _pick_view(self, j: int, act: np.ndarray, s: Sessions, shelf: Shelf, prev: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The `j`-th view of sessions `act`: a popular item, unless the favourite brand, a
        neighbour of the previous view or (opening a session) a resume / complement / rebuy
        overrides it, in that order. Returns the items and their pick modes."""
        u = s.user[act]
        cat, chosen = self._popular(u, s.mission[act], shelf, rng)
        mode = np.full(len(act), POPULAR, np.int8)
        chosen = self._brand(u, cat, chosen, mode, shelf, rng)
        if j > 0:
            return self._neighbour(prev, chosen, mode, shelf, rng), mode
        return self._opening(act, s, chosen, mode, shelf, rng), mode

    def _popular(self, u: np.ndarray, mission: np.ndarray, shelf: Shelf,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A category (mostly the mission, sometimes a wander by taste) and an item in it by
        today's weight; an empty category falls back to the mission."""
        w = self.w
        cat = np.where(rng.random(len(u)) < self.b.p_stay_on_mission, mission,
                       self._taste_category(u, rng))
        cat = np.where(shelf.cat_mass[cat] > 0, cat, mission)
        return cat, shelf.pick(w.cat_start[cat], w.cat_start[cat + 1], rng.random(len(u)))

    def _brand(self, u: np.ndarray, cat: np.ndarray, chosen: np.ndarray, mode: np.ndarray,
               shelf: Shelf, rng: np.random.Generator) -> np.ndarray:
        """Loyal users switch to an item of their favourite brand in the category."""
        w, b = self.w, self.b
        r = rng.random(len(u))
        pair = self._favourite_pair(u, cat)
        pick = shelf.pick(w.pair_start[pair], w.pair_start[pair + 1], rng.random(len(u)))
        p_brand = b.brand_base + b.brand_loyalty_slope * w.user_loyalty[u]
        ok = (r < p_brand) & (shelf.weight[pick] > 0)
        return _override(chosen, mode, ok, pick, BRAND)

    def _neighbour(self, prev: np.ndarray, chosen: np.ndarray, mode: np.ndarray, shelf: Shelf,
                   rng: np.random.Generator) -> np.ndarray:
        """A later view may land next to the previous item (same category, similar rank)."""
        w, b, n = self.w, self.b, len(prev)
        pc = w.item_cat[prev]
        nb = np.clip(prev + rng.integers(-b.neighbour_radius, b.neighbour_radius + 1, size=n),
                     w.cat_start[pc], w.cat_start[pc + 1] - 1)
        ok = (rng.random(n) < b.p_neighbour) & (shelf.weight[nb] > 0)
        return _override(chosen, mode, ok, nb, NEIGHBOUR)

    def _opening(self, act: np.ndarray, s: Sessions, chosen: np.ndarray, mode: np.ndarray,
                 shelf: Shelf, rng: np.random.Generator) -> np.ndarray:
        """A session opens on the last viewed item, the complement of the last purchase, or
        (always, for a repurchase session) the consumable that fell due."""
        st, b, n = self.state, self.b, len(act)
        u = s.user[act]
        last = st.last_item[u]
        ok = (last >= 0) & (rng.random(n) < b.p_resume)
        chosen = _override(chosen, mode, ok, last, RESUME)
        comp = s.comp_item[act]
        ok = s.use_comp[act] & (rng.random(n) < b.p_complement_view) & (shelf.weight[comp] > 0)
        chosen = _override(chosen, mode, ok, comp, COMPLEMENT)
        return _override(chosen, mode, s.is_rebuy[act], st.rebuy_item[u], REBUY)

    def _favourite_pair(self, u: np.ndarray, cat: np.ndarray) -> np.ndarray:
        """The user's favourite (category, brand) pair in `cat`: a stable hash of (user, cat)."""
        return self.w.cat_pair_start[cat] + (u.astype(np.int64) * 2654435761 + cat * 97) \
            % self.n_pairs_in_cat[cat]

    # --- phase 5: prices and the funnel --------------------------------------------------------
    def _funnel(self, s: Sessions, item: np.ndarray, how: np.ndarray,
                rng: np.random.Generator) -> Views:
        """Discounts, then click → cart → purchase, driven by affinity and price sensitivity."""
        w, b = self.w, self.b
        V = len(item)
        vu = s.user[s.of_view]
        icat = w.item_cat[item]
        aff = np.log(w.user_taste[vu, icat] * len(w.cat_names) + b.affinity_floor)
        discount = np.where(rng.random(V) < b.p_discount, rng.uniform(*b.discount_range, V), 0.0)
        paid = np.round(w.item_price[item] * (1.0 - discount), 2)
        rel = np.log(paid / w.cat_price[icat])
        sens = w.user_price_sens[vu]
        rebuy = how == REBUY
        p_click = np.where(rebuy, b.rebuy_click, _sigmoid(
            b.click_bias + b.click_affinity * aff - b.click_price * sens * rel
            + b.click_brand * (how == BRAND) + b.click_complement * (how == COMPLEMENT)
            + b.click_discount * discount))
        clicked = rng.random(V) < p_click
        p_cart = np.where(rebuy, b.rebuy_cart, _sigmoid(
            b.cart_bias + b.cart_affinity * aff - b.cart_price * sens * rel))
        carted = clicked & (rng.random(V) < p_cart)
        p_buy = np.where(rebuy, b.rebuy_buy, _sigmoid(
            b.buy_bias + b.buy_affinity * aff - b.buy_price * sens * rel))
        bought = carted & (rng.random(V) < p_buy)
        return Views(item=item, how=how, discount=discount, paid=paid, clicked=clicked,
                     carted=carted, bought=bought)

    # --- phase 6: timestamps, quantities, one time-sorted event table --------------------------
    def _events(self, s: Sessions, v: Views, rng: np.random.Generator) -> DayEvents:
        b = self.b
        V = len(v.item)
        gaps = rng.exponential(b.view_gap_s, V)
        gaps[s.first] = 0.0
        t_view = s.start[s.of_view] + _segment_cumsum(gaps, s.first, s.length)
        t_click = t_view + b.click_delay_s[0] + rng.exponential(b.click_delay_s[1], V)
        t_cart = t_click + b.cart_delay_s[0] + rng.exponential(b.cart_delay_s[1], V)
        t_buy = t_cart + b.buy_delay_s[0] + rng.exponential(b.buy_delay_s[1], V)
        consumable = self.w.cat_cycle[self.w.item_cat[v.item]] > 0
        qty = np.where(consumable, 1 + rng.poisson(b.extra_units, V), 1).astype(np.int32)

        parts = [(np.ones(V, bool), t_view, VIEW), (v.clicked, t_click, CLICK),
                 (v.carted, t_cart, CART), (v.bought, t_buy, PURCHASE)]
        sec = np.concatenate([t[m] for m, t, _ in parts])
        et = np.concatenate([np.full(int(m.sum()), code, np.int8) for m, _, code in parts])
        src = np.concatenate([np.flatnonzero(m) for m, _, _ in parts])
        order = np.lexsort((et, sec))
        sec, et, src = sec[order], et[order], src[order]
        return DayEvents(seconds=sec, user=s.user[s.of_view[src]].astype(np.int32),
                         item=v.item[src], etype=et, session=s.of_view[src].astype(np.int64),
                         price=v.paid[src],
                         quantity=np.where(et >= CART, qty[src], 0).astype(np.int32))

    # --- phase 7: what users carry into tomorrow -----------------------------------------------
    def _update_state(self, d: int, ev: DayEvents, rng: np.random.Generator) -> None:
        """Last view and purchase per user; a consumable bought falls due again after its
        category's cycle, jittered."""
        w, st = self.w, self.state
        views = ev.etype == VIEW
        st.last_item[ev.user[views]] = ev.item[views]  # fancy assignment keeps the last (latest)
        buys = ev.etype == PURCHASE
        bu, bi = ev.user[buys], ev.item[buys]
        st.last_buy[bu] = bi
        cyc = w.cat_cycle[w.item_cat[bi]]
        cons = cyc > 0
        jitter = rng.lognormal(0.0, self.b.cycle_jitter, int(cons.sum()))
        due = d + np.maximum(1, np.round(cyc[cons] * jitter))
        st.rebuy_item[bu[cons]] = bi[cons]
        st.rebuy_day[bu[cons]] = due.astype(np.int32)
