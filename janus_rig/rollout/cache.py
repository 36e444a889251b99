"""Key/value caches for the sampler: preallocated per-row caches, shared prefixes, and the attention over both.

Rollout decoding on a CPU is bound by memory traffic: every step reads every cached key and value once. Two
things keep that traffic down:

- `KVCache`: one preallocated buffer (B, H, W, hd) per layer; a step writes its column in place, so decoding
  allocates nothing per step. `select` drops finished rows (copying only the filled columns); `place` copies rows
  into another cache shifted right, which realigns rows of different lengths for the image phase.
- `SharedPrefix`: keys/values that `group` consecutive rows all attend to first, stored once: a prompt for its G
  samples, and the single BOS + pads row for every unconditional CFG row (an unconditional row of length L is
  the first L tokens of the longest one). Scores against a prefix are one matrix product per prefix
  (G queries x prefix keys) instead of G matrix-vector products over G copies.

`Block` = a shared prefix (optional) + a per-row `KVCache` for rows [a, b) of the decode batch; its attention
is softmax over [prefix columns | own columns], exactly the attention over the concatenated sequence.
`DecodeCache` is what the decoder layers see while decoding: it stores each new key/value in its block and
answers `attend`. transformers' attention layers reach it through `decode_attention`, registered with
transformers' `AttentionInterface` (prefill, with several new tokens per row, uses transformers' SDPA).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

ATTENTION = "janus_rig_rollout"


class KVCache:
    """Per-row keys/values, preallocated. Also the cache of a prefill (it answers transformers' `update`)."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], keep: torch.Tensor, length: int = 0):
        self.keys = keys  # per layer (B, H, W, hd)
        self.values = values  # per layer (B, H, W, hd)
        self.keep = keep  # (B, W) bool: the column holds a real token (False: padding)
        self.length = length  # columns filled so far

    @classmethod
    def allocate(cls, layers: int, rows: int, heads: int, width: int, head_dim: int, dtype, device, zero: bool = False):
        """`zero=False` leaves the buffers uninitialised: fine where every column read is written first; padding
        columns that attention reads (masked) must be finite, so caches with gaps are allocated with zeros."""
        make = torch.zeros if zero else torch.empty
        shape = (rows, heads, width, head_dim)
        keys = [make(shape, dtype=dtype, device=device) for _ in range(layers)]
        values = [make(shape, dtype=dtype, device=device) for _ in range(layers)]
        return cls(keys, values, torch.zeros(rows, width, dtype=torch.bool, device=device))

    @property
    def rows(self) -> int:
        return self.keep.shape[0]

    @property
    def width(self) -> int:
        return self.keep.shape[1]

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write (B, H, S, hd) at columns [length, length + S); return the filled (B, H, length + S, hd) views."""
        end = self.length + key.shape[2]
        self.keys[layer_idx][:, :, self.length : end] = key
        self.values[layer_idx][:, :, self.length : end] = value
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]

    def advance(self, steps: int) -> None:
        """Called once every layer has written a forward's columns."""
        self.length += steps

    def prefill_mask(self, steps: int) -> torch.Tensor:
        """(B, 1, S, length + S) bool for S new tokens: causal, padding masked. A padding query sees itself, so
        no softmax row is empty (an empty one would put NaN into the cache)."""
        end = self.length + steps
        cols = torch.arange(end, device=self.keep.device)  # (W',)
        rows = cols[self.length :, None]  # (S, 1)
        mask = (cols[None, :] <= rows) & self.keep[:, None, :end]  # (B, S, W')
        mask |= cols[None, None, :] == rows[None]  # (B, S, W') the diagonal
        return mask[:, None]

    def select(self, rows: torch.Tensor, width: int | None = None) -> "KVCache":
        """A new cache with these rows, `width` columns (default: ours); copies only the filled columns.
        Columns beyond our width (growing) are for tokens still to come: `keep` is True there."""
        n, width = self.length, self.width if width is None else width
        like = self.keys[0]
        heads, head_dim = like.shape[1], like.shape[3]
        out = KVCache.allocate(len(self.keys), len(rows), heads, width, head_dim, like.dtype, like.device)
        for src, dst in zip((*self.keys, *self.values), (*out.keys, *out.values)):
            dst[:, :, :n] = src[rows, :, :n]
        kept = min(width, self.width)
        out.keep[:, :kept] = self.keep[rows, :kept]
        out.keep[:, kept:] = True
        out.length = n
        return out

    def place(self, dst_rows: torch.Tensor, src: "KVCache", src_rows: torch.Tensor, columns: int, offset: int) -> None:
        """Copy the first `columns` columns of `src`'s rows into our rows, starting at our column `offset`."""
        for s, d in zip((*src.keys, *src.values), (*self.keys, *self.values)):
            d[dst_rows, :, offset : offset + columns] = s[src_rows, :, :columns]
        self.keep[dst_rows, offset : offset + columns] = src.keep[src_rows, :columns]


class SharedPrefix:
    """Keys/values attended to first by `group` consecutive rows each (prefix p serves rows p*group...)."""

    def __init__(self, cache: KVCache, group: int, keep: torch.Tensor):
        self.keys = [k[:, :, : cache.length] for k in cache.keys]  # per layer (Np, H, Lp, hd)
        self.values = [v[:, :, : cache.length] for v in cache.values]  # per layer (Np, H, Lp, hd)
        self.count, self.group = cache.rows, group
        self.keep = keep  # (Np * group, Lp) bool, per row: which prefix columns it attends to
        if keep.shape != (self.count * group, cache.length):
            raise ValueError(f"prefix keep {tuple(keep.shape)} != ({self.count} x {group}, {cache.length})")

    @property
    def width(self) -> int:
        return self.keep.shape[1]

    def _to_groups(self, x: torch.Tensor, slots: torch.Tensor | None) -> torch.Tensor:
        """(A, Hkv, g, d) per active row -> (Np, Hkv, group * g, d), absent rows zero."""
        if slots is not None:
            full = x.new_zeros(self.count * self.group, *x.shape[1:])
            full[slots] = x
            x = full
        _, Hkv, g, d = x.shape
        x = x.reshape(self.count, self.group, Hkv, g, d).transpose(1, 2)  # (Np, Hkv, group, g, d)
        return x.reshape(self.count, Hkv, self.group * g, d)

    def _from_groups(self, x: torch.Tensor, g: int, slots: torch.Tensor | None) -> torch.Tensor:
        """(Np, Hkv, group * g, d) -> (A, Hkv, g, d)."""
        Np, Hkv, _, d = x.shape
        x = x.reshape(Np, Hkv, self.group, g, d).transpose(1, 2).reshape(Np * self.group, Hkv, g, d)
        return x if slots is None else x[slots]

    def scores(self, q: torch.Tensor, layer: int, slots: torch.Tensor | None) -> torch.Tensor:
        """(A, Hkv, g, hd) queries -> (A, Hkv, g, Lp) raw scores against the row's prefix."""
        grouped = self._to_groups(q, slots)  # (Np, Hkv, group * g, hd)
        return self._from_groups(grouped @ self.keys[layer].transpose(2, 3), q.shape[2], slots)

    def mix(self, probs: torch.Tensor, layer: int, slots: torch.Tensor | None) -> torch.Tensor:
        """(A, Hkv, g, Lp) attention weights -> (A, Hkv, g, hd) weighted prefix values."""
        grouped = self._to_groups(probs, slots)  # (Np, Hkv, group * g, Lp)
        return self._from_groups(grouped @ self.values[layer], probs.shape[2], slots)


class Block:
    """Rows of the decode batch: an optional shared prefix, then each row's own cache."""

    def __init__(self, own: KVCache, prefix: SharedPrefix | None = None, slots: torch.Tensor | None = None):
        self.own, self.prefix, self.slots = own, prefix, slots  # slots (A,): row -> prefix slot; None: all, in order
        if prefix is None:
            keep = own.keep  # (A, W)
        else:
            pre = prefix.keep if slots is None else prefix.keep[slots]  # (A, Lp)
            keep = torch.cat([pre, own.keep], 1)  # (A, Lp + W)
        self.hidden = ~keep[:, None, None, :]  # (A, 1, 1, Lp + W) bool: columns a row must not see

    @property
    def rows(self) -> int:
        return self.own.rows

    def select(self, rows: torch.Tensor, width: int | None = None) -> "Block":
        """Keep only these rows (finished rows leave the batch), optionally in a wider own cache."""
        slots = rows if self.slots is None else self.slots[rows]
        return Block(self.own.select(rows, width), self.prefix, slots if self.prefix is not None else None)

    def attend(self, query: torch.Tensor, layer: int, scaling: float) -> torch.Tensor:
        """(A, H, 1, hd) queries of the newest token -> (A, 1, H, hd). Its own key/value is already written."""
        A, H, _, hd = query.shape
        width = self.own.length + 1
        own_k = self.own.keys[layer][:, :, :width]  # (A, Hkv, W, hd)
        own_v = self.own.values[layer][:, :, :width]  # (A, Hkv, W, hd)
        Hkv = own_k.shape[1]
        q = query.reshape(A, Hkv, H // Hkv, hd)  # (A, Hkv, g, hd): the g query heads sharing a key head
        scores = q @ own_k.transpose(2, 3)  # (A, Hkv, g, W)
        Lp = 0
        if self.prefix is not None:
            Lp = self.prefix.width
            scores = torch.cat([self.prefix.scores(q, layer, self.slots), scores], -1)  # (A, Hkv, g, Lp + W)
        scores = (scores * scaling).masked_fill_(self.hidden[..., : Lp + width], float("-inf"))
        probs = scores.softmax(-1)  # (A, Hkv, g, Lp + W)
        out = probs[..., Lp:] @ own_v  # (A, Hkv, g, hd)
        if self.prefix is not None:
            out = out + self.prefix.mix(probs[..., :Lp], layer, self.slots)
        return out.reshape(A, 1, H, hd)


class DecodeCache:
    """The decode batch as the layers see it: blocks of consecutive rows, one new token per row per step."""

    def __init__(self, blocks: list[Block]):
        self.blocks = blocks
        self.bounds = []
        start = 0
        for block in blocks:
            self.bounds.append((start, start + block.rows))
            start += block.rows

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Store (B, Hkv, 1, hd) in each block's own cache; attention happens in `attend`."""
        for block, (a, b) in zip(self.blocks, self.bounds):
            col = block.own.length
            block.own.keys[layer_idx][:, :, col] = key[a:b, :, 0]
            block.own.values[layer_idx][:, :, col] = value[a:b, :, 0]
        return key, value

    def attend(self, query: torch.Tensor, layer: int, scaling: float) -> torch.Tensor:
        """(B, H, 1, hd) -> (B, 1, H, hd)."""
        outs = [block.attend(query[a:b], layer, scaling) for block, (a, b) in zip(self.blocks, self.bounds)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def advance(self, steps: int) -> None:
        for block in self.blocks:
            block.own.advance(steps)


def rollout_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, rollout_cache=None, **kwargs):
    """The attention transformers' layers call during a rollout (`AttentionInterface` entry `janus_rig_rollout`).

    Decoding (`rollout_cache` given): the cache's blocks attend, see `Block.attend`. Prefill: transformers' SDPA.
    query (B, H, S, hd) -> (B, S, H, hd).
    """
    if rollout_cache is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    return rollout_cache.attend(query, module.layer_idx, scaling), None


AttentionInterface.register(ATTENTION, rollout_attention)


@contextmanager
def rollout_attention_for(config):
    """Route the decoder layers of `config` (the language model's) through `rollout_attention` for a rollout."""
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous
