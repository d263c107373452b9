"""Every knob of the simulated shoppers' behaviour, in one place.

The values are tuned so the funnel narrows believably and a recommender has signal to learn;
changing any of them changes the simulated bytes for every seed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Behaviour:
    """How users and items behave. Kept as Python floats: NumPy keeps float32 arrays float32 when
    they meet a Python float, and the simulator's output depends on it."""

    # --- traits drawn once per user / item (world.py) --------------------------------------------
    popularity_exponent: float = 0.9       # long tail: an item's base popularity is 1 / rank**this
    trend_sd: float = 0.02                 # sd of an item's daily log-popularity drift
    taste_concentration: float = 0.25      # Dirichlet α of category taste (< 1: a few favourites)
    browse_share: float = 0.08             # share of taste spread like the shop's category mix
    price_sens_sd: float = 0.5             # log-sd of users' price sensitivity
    activity_sd: float = 1.0               # log-sd of users' activity (heavy-tailed)
    loyalty_beta: tuple[float, float] = (2.0, 4.0)  # Beta(a, b) of brand loyalty in [0, 1]

    # --- traffic -------------------------------------------------------------------------------
    weekly: tuple[float, ...] = (0.95, 0.92, 0.94, 0.97, 1.04, 1.13, 1.05)  # Mon..Sun traffic
    hourly: tuple[float, ...] = (  # traffic by hour of day: lunch bump, evening peak
        0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.5, 0.9, 1.1, 1.2, 1.25, 1.35, 1.5, 1.4,
        1.25, 1.2, 1.25, 1.4, 1.7, 2.0, 2.2, 2.1, 1.6, 1.0)
    growth_exponent: float = 0.9           # sessions grow as (users signed up / at day 0)**this
    trend_cap: float = 3.0                 # cap on an item's accumulated log-popularity drift
    novelty_boost: float = 4.0             # extra weight of a brand-new item (× base popularity)
    novelty_days: float = 7.0              # e-folding time of that novelty boost

    # --- sessions ------------------------------------------------------------------------------
    p_complement_mission: float = 0.35     # mission = complement of the last purchase
    session_end: float = 0.27              # geometric stop probability after each view
    max_views: int = 25                    # cap on views per session
    max_rebuy_views: int = 2               # a repurchase session is short and to the point

    # --- picking the item of each view ---------------------------------------------------------
    p_stay_on_mission: float = 0.85        # else the view wanders to a category from taste
    brand_base: float = 0.15               # P(favourite brand) = base + slope × loyalty ...
    brand_loyalty_slope: float = 0.6       # ... so loyal users stick to their brand
    neighbour_radius: int = 4              # a neighbour is up to this many items away in the list
    p_neighbour: float = 0.35              # a later view is a neighbour of the previous one
    p_resume: float = 0.2                  # a session opens on the user's last viewed item
    p_complement_view: float = 0.6         # a complement mission opens on the complement item

    # --- prices --------------------------------------------------------------------------------
    p_discount: float = 0.12               # a view shows a discounted price
    discount_range: tuple[float, float] = (0.1, 0.3)  # uniform discount share when discounted
    affinity_floor: float = 0.05           # affinity = log(taste × categories + this)

    # --- funnel: logit of going on = bias + affinity × aff − price × sens × log(price / median)
    click_bias: float = -1.8               # view → click: most views are not clicked
    click_affinity: float = 0.45           # liked categories get clicked more
    click_price: float = 0.5               # price-sensitive users skip expensive items
    click_brand: float = 0.4               # extra logit for a favourite-brand view
    click_complement: float = 0.8          # extra logit for the complement item
    click_discount: float = 3.0            # extra logit per unit of discount share
    cart_bias: float = -1.1                # click → add_to_cart
    cart_affinity: float = 0.35
    cart_price: float = 0.7                # price weighs more the closer the money gets
    buy_bias: float = 0.1                  # add_to_cart → purchase: most carts are bought
    buy_affinity: float = 0.3
    buy_price: float = 0.8
    rebuy_click: float = 0.9               # a due repurchase skips the model: fixed odds ...
    rebuy_cart: float = 0.85               # ... of click, add_to_cart ...
    rebuy_buy: float = 0.85                # ... and purchase

    # --- timing: (fixed minimum, exponential mean) in seconds after the previous step --------
    view_gap_s: float = 45.0               # mean gap between views (exponential)
    click_delay_s: tuple[float, float] = (1.0, 8.0)     # view → click
    cart_delay_s: tuple[float, float] = (1.0, 30.0)     # click → add_to_cart
    buy_delay_s: tuple[float, float] = (5.0, 120.0)     # add_to_cart → purchase (checkout)

    # --- consumables ---------------------------------------------------------------------------
    extra_units: float = 0.6               # Poisson mean of extra units of a consumable
    cycle_jitter: float = 0.25             # log-sd of the repurchase cycle around the category's


BEHAVIOUR = Behaviour()
