"""The sequential recommender: a causal transformer over the shopper's last N interactions.

SASRec's shape (self-attention over the sequence, the output at each position scored against
every item) with a shop's inputs: each step is item + event type + time gap, and an item's vector
is its id embedding plus embeddings of its category, brand and price bucket. Input and output
share the item vectors; an item nobody has touched yet still gets a vector from its side features
(id dropout in training teaches the model to rely on them). Optional user features (point-in-time
from Feast) shift the user vector.

Shoppers come back to what they viewed and re-buy consumables, which a dot product with item
vectors captures poorly. A small repeat term adds, for every item in the window, a learned
weight per event type, category and distance in steps, scaled by a gate read from the user
state: the model learns how much (or, where re-consuming never happens, how little) the history
itself should rank. The same weights explain a recommendation ("because you viewed X").

Scripted for serving: no Python from this repo is needed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class SeqRecConfig:
    """Everything the model's shape depends on. No defaults: the sizes come from the data, the
    hyper-parameters from `TrainingSettings` (their one home), and checkpoints and exports store
    every field, so a model always loads with the exact config it was trained with."""

    # vocabularies, from the data
    n_items: int  # without padding (index 0)
    n_categories: int  # with padding
    n_brands: int  # with padding
    n_price_buckets: int  # with padding
    n_event_types: int  # with padding
    n_gap_buckets: int  # with padding
    n_user_features: int  # 0 = no user features
    # hyper-parameters, from TrainingSettings
    max_len: int  # positions the model sees
    dim: int
    layers: int
    heads: int
    dropout: float
    id_dropout: float  # chance of dropping an item's id embedding in training


AGE_BUCKETS = 32


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: SeqRecConfig):
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.ff = nn.Sequential(nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(),
                                nn.Linear(4 * cfg.dim, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)  # on residual branches (attention dropout costs
        # a Bernoulli mask per head and pair of positions: a third of a CPU step, for no gain)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(b, n, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(b, n, self.heads, d // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class SeqRec(nn.Module):
    def __init__(self, cfg: SeqRecConfig):
        super().__init__()
        self.max_len = cfg.max_len
        self.id_dropout = cfg.id_dropout
        self.n_user_features = cfg.n_user_features
        d = cfg.dim
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.cat_emb = nn.Embedding(cfg.n_categories, d, padding_idx=0)
        self.brand_emb = nn.Embedding(cfg.n_brands, d, padding_idx=0)
        self.price_emb = nn.Embedding(cfg.n_price_buckets, d, padding_idx=0)
        self.etype_emb = nn.Embedding(cfg.n_event_types, d, padding_idx=0)
        self.gap_emb = nn.Embedding(cfg.n_gap_buckets, d, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.user_proj = nn.Linear(max(cfg.n_user_features, 1), d)
        self.repeat_type = nn.Embedding(cfg.n_event_types, 1)
        self.repeat_dist = nn.Embedding(cfg.max_len, 1)
        self.repeat_cat = nn.Embedding(cfg.n_categories, 1)  # consumables come back
        self.repeat_age = nn.Embedding(AGE_BUCKETS, 1)  # log2 seconds between p and t
        self.repeat_gate = nn.Linear(d, 1)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.layers)])
        self.ln_in = nn.LayerNorm(d)
        self.ln_out = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        # item side features, registered as buffers so the scripted model carries them
        self.register_buffer("item_cat", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        self.register_buffer("item_brand", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        self.register_buffer("item_price", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        self.apply(self._init)
        for w in (self.repeat_type.weight, self.repeat_dist.weight, self.repeat_cat.weight,
                  self.repeat_age.weight):
            nn.init.zeros_(w)  # starts as a plain dot-product model

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def set_item_features(self, cat: Tensor, brand: Tensor, price: Tensor) -> None:
        self.item_cat.copy_(cat)
        self.item_brand.copy_(brand)
        self.item_price.copy_(price)

    @torch.jit.export
    def side_vectors(self, cat: Tensor, brand: Tensor, price: Tensor) -> Tensor:
        """Vectors of items from side features alone (new items, no id embedding yet)."""
        return self.cat_emb(cat) + self.brand_emb(brand) + self.price_emb(price)

    def item_vectors_of(self, items: Tensor) -> Tensor:
        side = self.side_vectors(self.item_cat[items], self.item_brand[items],
                                 self.item_price[items])
        ids = self.item_emb(items)
        if self.training and self.id_dropout > 0:
            keep = torch.rand(ids.shape[:-1], device=ids.device) >= self.id_dropout
            ids = ids * keep.unsqueeze(-1).to(ids.dtype)
        return ids + side

    @torch.jit.export
    def item_vectors(self) -> Tensor:
        """The output vectors of every item (row 0 = padding)."""
        return self.item_emb.weight + self.side_vectors(self.item_cat, self.item_brand,
                                                        self.item_price)

    def encode(self, items: Tensor, etypes: Tensor, gaps: Tensor, user_feats: Tensor) -> Tensor:
        """Hidden state at every position [B, L, D]; sequences are left-padded with 0."""
        b, n = items.shape
        pos = torch.arange(n, device=items.device) + (self.max_len - n)
        x = self.item_vectors_of(items) + self.etype_emb(etypes) + self.gap_emb(gaps)
        x = self.drop(self.ln_in(x * math.sqrt(x.shape[-1]) + self.pos_emb(pos)))
        valid = items != 0
        causal = torch.ones(n, n, dtype=torch.bool, device=items.device).tril()
        eye = torch.eye(n, dtype=torch.bool, device=items.device)
        mask = (causal & valid.unsqueeze(1)) | eye  # a padded row attends to itself: no NaN
        mask = mask.unsqueeze(1)
        for block in self.blocks:
            x = block(x, mask)
        h = self.ln_out(x)
        if self.n_user_features > 0:
            h = h + self.user_proj(user_feats)
        return h

    def repeat_weights(self, items: Tensor, etypes: Tensor, h: Tensor,
                       times: Tensor | None = None) -> Tensor:
        """W[b, t, p]: how much the item at position p adds to its own score when predicting
        after position t (0 for p > t and for padding). `times` (seconds, any origin) adds a
        weight by how long ago p happened, seen from t."""
        n = items.shape[1]
        steps = torch.arange(n, device=items.device)
        dist = (steps.unsqueeze(1) - steps.unsqueeze(0)).clamp(0, self.max_len - 1)  # t - p
        per_item = self.repeat_type(etypes) + self.repeat_cat(self.item_cat[items])  # [B, L, 1]
        w = per_item.squeeze(-1).unsqueeze(1) + self.repeat_dist(dist).squeeze(-1)
        if times is not None:
            age = (times.unsqueeze(2) - times.unsqueeze(1)).clamp(min=0)  # [B, t, p]
            n_age = self.repeat_age.weight.shape[0]
            bucket = torch.log2(age + 1).floor().clamp(0, n_age - 1).long()
            w = w + self.repeat_age(bucket).squeeze(-1)
        causal = (steps.unsqueeze(1) >= steps.unsqueeze(0)) & (items != 0).unsqueeze(1)
        return w * causal.to(w.dtype) * self.repeat_gate(h)

    def forward(self, items: Tensor, etypes: Tensor, gaps: Tensor, user_feats: Tensor) -> Tensor:
        """The user vector after the last position [B, D]: dot it with item_vectors() (then add
        repeat_bonus for the full score; `scores` does both)."""
        return self.encode(items, etypes, gaps, user_feats.unsqueeze(1))[:, -1]

    @torch.jit.export
    def scores(self, items: Tensor, etypes: Tensor, gaps: Tensor, user_feats: Tensor,
               times: Tensor | None = None) -> Tensor:
        """Scores of every item [B, n_items + 1] after the last position (column 0 = padding)."""
        h = self.encode(items, etypes, gaps, user_feats.unsqueeze(1))
        s = h[:, -1] @ self.item_vectors().t()
        w = self._last_repeat_weights(items, etypes, h, times)  # [B, L]
        return s.scatter_add(1, items, w.to(s.dtype))

    @torch.jit.export
    def repeat_bonus(self, items: Tensor, etypes: Tensor, gaps: Tensor, user_feats: Tensor,
                     times: Tensor | None = None) -> Tensor:
        """Per position of the input, what its item adds to that item's score [B, L]: the
        "because you viewed X" part of a recommendation."""
        h = self.encode(items, etypes, gaps, user_feats.unsqueeze(1))
        return self._last_repeat_weights(items, etypes, h, times)

    def _last_repeat_weights(self, items: Tensor, etypes: Tensor, h: Tensor,
                             times: Tensor | None) -> Tensor:
        return self.repeat_weights(items, etypes, h[:, -1:], times)[:, -1]

    def loss(self, items: Tensor, etypes: Tensor, gaps: Tensor, user_feats: Tensor,
             targets: Tensor, negatives: Tensor | None = None,
             times: Tensor | None = None) -> Tensor:
        """Cross-entropy of the next item at every non-padded position: over the whole catalogue,
        or (sampled softmax) over the target and `negatives`, item indices shared by the batch;
        a negative that is the position's own target is masked out."""
        h = self.encode(items, etypes, gaps, user_feats)
        w = self.repeat_weights(items, etypes, h, times)  # [B, L, L]
        sel = targets != 0
        hs, t, ws = h[sel], targets[sel], w[sel]
        hist = items.unsqueeze(1).expand(-1, items.shape[1], -1)[sel]  # [P, L] items seen
        if negatives is None:
            logits = hs @ self.item_vectors().t()
            logits = logits.scatter_add(1, hist, ws.to(logits.dtype))
            return F.cross_entropy(logits[:, 1:].float(), t - 1)  # padding is never a target
        pos = (hs * self.item_vectors_of(t)).sum(-1) + (ws * (hist == t.unsqueeze(1))).sum(-1)
        k = negatives.shape[0]  # negatives are distinct: map item -> its slot among them
        slot = torch.full((self.item_cat.shape[0],), k, dtype=torch.long, device=items.device)
        slot[negatives] = torch.arange(k, device=items.device)
        bonus = torch.zeros(hs.shape[0], k + 1, dtype=ws.dtype, device=items.device)
        bonus = bonus.scatter_add(1, slot[hist], ws)[:, :k]
        neg = hs @ self.item_vectors_of(negatives).t() + bonus.to(hs.dtype)
        neg = neg.masked_fill(negatives.unsqueeze(0) == t.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos.unsqueeze(1), neg], dim=1).float()
        return F.cross_entropy(logits, torch.zeros_like(t))
