"""Interpolated attention of AID (docs/how-it-works.md), written once, on one tensor layout.

Tensors are [rows, heads, tokens, dim_head]. `q`, `k`, `v` are the interior frames' own projections,
one row per frame; `k_a, v_a` and `k_b, v_b` are those of the two key rows the frames lie between
(endpoints A and B) at the same layer and step, [1, heads, tokens, dim_head] shared by every row (or
one per row); `t` holds one coefficient per row. `interpolated` is the token range of the endpoints'
keys that takes part: all of them where it is None, as on UNets (a layer attends to one kind of
keys), and on DiTs the pack's `layers` choice as a key subset of joint attention (image tokens for
"self only", text tokens for "cross only"; attention/joint_override.py).

Modes, with E = the endpoints' keys in the range and own = the frame's own keys:
- fused outer: (1-t) Attn(Q, [own; E_A]) + t Attn(Q, [own; E_B])      (the default)
- fused inner: Attn(Q, [own; lerp(E_A, E_B, t)])
- outer:       (1-t) Attn(Q, [own outside the range; E_A]) + t Attn(Q, [own outside; E_B])
- inner:       Attn(Q, [own outside the range; lerp(E_A, E_B, t)])
With every token in the range, outer and inner are AID-O and AID-I exactly. Keys already carry their
positions and every row shares the same positions, so joining key sets is sound; the order of keys
does not matter to softmax attention.

Fused attention is computed by joining key sets ("concat": one call of `attention(q, k, v)`, the
user's attention backend, per term) or by merging per-set results with their log-sum-exp ("lse":
Attn(Q, [K1; K2]) = (e^lse1 O1 + e^lse2 O2) / (e^lse1 + e^lse2)), which for fused outer needs three
attentions over L keys instead of two over 2L; `attention_lse` (attention/lse_attention.py) returns
the log-sum-exp no backend returns. Results come in q's dtype; the merge computes in float32 and casts
back once, at the end.

A UNet's [rows, tokens, heads * dim_head] tensors are this layout in "token-major" memory
(heads_view, a view). Joined key sets keep the memory order of the frames' keys, and rows fold into
one batch of queries where that is a view, so a backend that takes [rows, tokens, channels]
(attention_on_tokens) receives exactly the tensors it would get from code written on that layout.
"""
from __future__ import annotations

from typing import Callable

import torch

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
AttentionLseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

MODES = ("fused outer", "fused inner", "outer", "inner")
DEFAULT_MODE = "fused outer"
FUSION_STRATEGIES = ("concat", "lse")


def check_mode(mode: str) -> None:
    """Raise ValueError for a mode that is not one of MODES."""
    if mode not in MODES:
        raise ValueError(f"unknown interpolation mode '{mode}', expected one of {', '.join(MODES)}.")


# ------------------------------------------------------------------------------------------ layout


def heads_view(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[rows, tokens, heads * d] -> [rows, heads, tokens, d], a view (token-major memory)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def tokens_view(x: torch.Tensor) -> torch.Tensor:
    """[rows, heads, tokens, d] -> [rows, tokens, heads * d]; a view for token-major tensors."""
    return x.transpose(1, 2).flatten(2)


def attention_on_tokens(attention: AttentionFn, heads: int) -> AttentionFn:
    """An attention function on this layout from one that takes and returns [rows, tokens, heads * d]."""
    def on_heads(q, k, v):
        return heads_view(attention(tokens_view(q), tokens_view(k), tokens_view(v)), heads)

    return on_heads


def _token_major(x: torch.Tensor) -> bool:
    """Whether heads vary faster than tokens in memory (a UNet's [rows, tokens, heads * d] seen as heads)."""
    return x.shape[1] > 1 and x.stride(1) < x.stride(2)


def join_tokens(*parts: torch.Tensor) -> torch.Tensor:
    """The parts joined along tokens, per row; a part with one row serves every row. Empty parts are left out.

    The result keeps the first part's memory order (token-major stays token-major), so a UNet's joined
    key set is the [rows, tokens, channels] tensor a join on that layout makes.
    """
    rows = max(part.shape[0] for part in parts)
    parts = [part.expand(rows, -1, -1, -1) for part in parts if part.shape[2]]
    if len(parts) == 1:
        return parts[0]
    if _token_major(parts[0]):
        return torch.cat([part.transpose(1, 2) for part in parts], dim=1).transpose(1, 2)
    return torch.cat(parts, dim=2)


def lerp_rows(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """lerp(a, b, t_r) for every row r (t [rows]; a one-row a or b serves every row), in a's memory order."""
    w = t.to(device=a.device, dtype=a.dtype).reshape(-1, 1, 1, 1)
    if _token_major(a):
        return torch.lerp(a.transpose(1, 2), b.transpose(1, 2), w).transpose(1, 2)
    return torch.lerp(a, b, w)


def over_shared_keys(attention, q, k, v):
    """attention(q, k, v) where k, v may be one key set [1, ...] for every row, without copying keys per row.

    Token-major rows fold into one batch of queries (a view: [1, heads, rows * tokens, d]); otherwise the
    key set is expanded. Works for an attention that returns out or (out, lse).
    """
    rows, heads, tokens, _ = q.shape
    if k.shape[0] == rows:
        return attention(q, k, v)
    if rows > 1 and _token_major(q) and q.stride(0) == tokens * q.stride(2):
        result = attention(q.transpose(0, 1).reshape(heads, rows * tokens, -1).unsqueeze(0), k, v)

        def unfold(x):
            return x[0].unflatten(1, (rows, tokens)).transpose(0, 1)

        return tuple(unfold(x) for x in result) if isinstance(result, tuple) else unfold(result)
    return attention(q, k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))


# ------------------------------------------------------------------------------------------ the modes


def merge_by_lse(out_1, lse_1, out_2, lse_2) -> torch.Tensor:
    """Attention over [K1; K2] from the results over K1 and K2 alone, in float32.

    out_i [rows, heads, Lq, d]; lse_i [rows, heads, Lq], the log-sum-exp of each set's scaled scores. The
    weight of set 1 is sigmoid(lse_1 - lse_2).
    """
    weight_1 = torch.sigmoid(lse_1.float() - lse_2.float()).unsqueeze(-1)
    return out_2.float() + weight_1 * (out_1.float() - out_2.float())


def interpolate(mode: str, q, k, v, k_a, v_a, k_b, v_b, t, attention: AttentionFn,
                attention_lse: AttentionLseFn | None = None, interpolated: slice | None = None) -> torch.Tensor:
    """Interpolated attention of the rows of q in `mode`; -> [rows, heads, Lq, d] in q's dtype.

    Fused modes merge by log-sum-exp when `attention_lse` is given, else join key sets in `attention`.
    An empty `interpolated` range leaves plain attention.
    """
    check_mode(mode)
    tokens = slice(None) if interpolated is None else interpolated
    if interpolated is not None and interpolated.stop <= interpolated.start:
        return attention(q, k, v)
    ends = [x[:, :, tokens] for x in (k_a, v_a, k_b, v_b)]
    fused = mode.startswith("fused")
    if fused and attention_lse is not None:
        return _fused_by_lse(mode, q, k, v, *ends, t, attention_lse)
    if fused or interpolated is None:
        own = ((k,), (v,)) if fused else ((), ())
    else:  # the frame's own keys outside the range
        own = ((k[:, :, :tokens.start], k[:, :, tokens.stop:]), (v[:, :, :tokens.start], v[:, :, tokens.stop:]))
    if mode.endswith("inner"):
        k_star, v_star = lerp_rows(ends[0], ends[2], t), lerp_rows(ends[1], ends[3], t)
        return attention(q, join_tokens(*own[0], k_star), join_tokens(*own[1], v_star))
    # outer: one joined key set at a time, so the second is built after the first is released
    out_a = over_shared_keys(attention, q, join_tokens(*own[0], ends[0]), join_tokens(*own[1], ends[1]))
    out_b = over_shared_keys(attention, q, join_tokens(*own[0], ends[2]), join_tokens(*own[1], ends[3]))
    return lerp_rows(out_a, out_b, t)


def _fused_by_lse(mode: str, q, k, v, k_a, v_a, k_b, v_b, t, attention_lse: AttentionLseFn) -> torch.Tensor:
    """Fused modes from the attention over the frame's own keys and over each endpoint set, merged by log-sum-exp."""
    out_own, lse_own = attention_lse(q, k, v)
    if mode == "fused inner":
        out_star, lse_star = attention_lse(q, lerp_rows(k_a, k_b, t), lerp_rows(v_a, v_b, t))
        return merge_by_lse(out_own, lse_own, out_star, lse_star).to(q.dtype)
    out_a, lse_a = over_shared_keys(attention_lse, q, k_a, v_a)
    fused_a = merge_by_lse(out_own, lse_own, out_a, lse_a)
    del out_a, lse_a
    out_b, lse_b = over_shared_keys(attention_lse, q, k_b, v_b)
    fused_b = merge_by_lse(out_own, lse_own, out_b, lse_b)
    return lerp_rows(fused_a, fused_b, t).to(q.dtype)


def interpolate_tokens(mode: str, q, k, v, k_a, v_a, k_b, v_b, t, attention: AttentionFn, heads: int,
                       attention_lse: AttentionLseFn | None = None) -> torch.Tensor:
    """interpolate() on a UNet's [rows, tokens, heads * d] tensors, with an `attention` on that layout too."""
    views = (heads_view(x, heads) for x in (q, k, v, k_a, v_a, k_b, v_b))
    return tokens_view(interpolate(mode, *views, t, attention_on_tokens(attention, heads), attention_lse))
