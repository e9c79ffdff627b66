"""Interpolated attention of AID (algorithm.md section 3), on the tensors a ComfyUI replace patch receives.

All tensors are [rows, tokens, heads * dim_head]. `q`, `k`, `v` are the interior frames' own
projections; `k_a, v_a` and `k_b, v_b` are endpoint A's and B's at the same layer and step
([1, tokens, C], shared by every row); `t` holds one coefficient per row. `attention(q, k, v)`
is the plain attention function to use (ComfyUI's optimized attention, or a chained patch).

Modes:
- inner:       Attn(Q, K*, V*) with K* = (1-t) K_A + t K_B, V* likewise
- outer:       (1-t) Attn(Q, K_A, V_A) + t Attn(Q, K_B, V_B)
- fused inner: Attn(Q, [K; K*], [V; V*])
- fused outer: (1-t) Attn(Q, [K; K_A], [V; V_A]) + t Attn(Q, [K; K_B], [V; V_B])   (the default)

Fused attention can be computed by joining key sets ("concat", one attention call over both
sets, the user's backend) or by merging per-set results with their log-sum-exp ("lse",
Attn(Q, [K1; K2]) = (e^lse1 O1 + e^lse2 O2) / (e^lse1 + e^lse2)), which for fused outer needs
three attentions over L keys instead of two over 2L.
"""
from __future__ import annotations

from typing import Callable

import torch

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
AttentionLseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

MODES = ("fused outer", "fused inner", "outer", "inner")
DEFAULT_MODE = "fused outer"
FUSION_STRATEGIES = ("concat", "lse")


def _row_weights(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Coefficients [rows] as [rows, 1, 1] in the dtype and device of `like`."""
    return t.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1)


def _shared_key_attention(attention: AttentionFn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of every row's queries against one key set [1, L, C], without copying keys per row."""
    rows, tokens, channels = q.shape
    out = attention(q.reshape(1, rows * tokens, channels), k, v)
    return out.reshape(rows, tokens, channels)


def _join(own: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """[own; shared] along tokens, per row: own [rows, L, C], shared [1 or rows, L', C]."""
    return torch.cat([own, shared.expand(own.shape[0], -1, -1)], dim=1)


def interpolated_keys(k_a, v_a, k_b, v_b, t):
    """K* = (1-t) K_A + t K_B and V* likewise, one row per coefficient."""
    w = _row_weights(t, k_a)
    return torch.lerp(k_a, k_b, w), torch.lerp(v_a, v_b, w)


def inner(q, k_a, v_a, k_b, v_b, t, attention: AttentionFn):
    """AID-I: attention over the interpolated endpoint keys and values."""
    k_star, v_star = interpolated_keys(k_a, v_a, k_b, v_b, t)
    return attention(q, k_star, v_star)


def outer(q, k_a, v_a, k_b, v_b, t, attention: AttentionFn):
    """AID-O: interpolation of the attention outputs over each endpoint's keys."""
    w = _row_weights(t, q)
    out_a = _shared_key_attention(attention, q, k_a, v_a)
    out_b = _shared_key_attention(attention, q, k_b, v_b)
    return torch.lerp(out_a, out_b, w)


def fused_inner(q, k, v, k_a, v_a, k_b, v_b, t, attention: AttentionFn):
    """Fused AID-I: the frame's own keys joined with the interpolated endpoint keys."""
    k_star, v_star = interpolated_keys(k_a, v_a, k_b, v_b, t)
    return attention(q, torch.cat([k, k_star], dim=1), torch.cat([v, v_star], dim=1))


def fused_outer(q, k, v, k_a, v_a, k_b, v_b, t, attention: AttentionFn):
    """Fused AID-O by joining key sets: (1-t) Attn(Q,[K;K_A]) + t Attn(Q,[K;K_B])."""
    w = _row_weights(t, q)
    out_a = attention(q, _join(k, k_a), _join(v, v_a))
    out_b = attention(q, _join(k, k_b), _join(v, v_b))
    return torch.lerp(out_a, out_b, w)


def merge_partial_attention(out_1, lse_1, out_2, lse_2, heads: int) -> torch.Tensor:
    """Attention over [K1; K2] from the results over K1 and K2 alone.

    out_i: [rows, Lq, heads*d]; lse_i: [rows, heads, Lq] log-sum-exp of each set's scaled scores.
    The weight of set 1 is sigmoid(lse_1 - lse_2), computed in float32 for stability.
    """
    rows, tokens, channels = out_1.shape
    weight_1 = torch.sigmoid(lse_1.float() - lse_2.float())  # [rows, heads, Lq]
    weight_1 = weight_1.transpose(1, 2).unsqueeze(-1)  # [rows, Lq, heads, 1]
    o1 = out_1.reshape(rows, tokens, heads, channels // heads)
    o2 = out_2.reshape(rows, tokens, heads, channels // heads)
    merged = o2.float() + weight_1 * (o1.float() - o2.float())
    return merged.reshape(rows, tokens, channels).to(out_1.dtype)


def fused_outer_lse(q, k, v, k_a, v_a, k_b, v_b, t, attention_lse: AttentionLseFn, heads: int):
    """Fused AID-O from three attentions over L keys (own, A, B) merged by log-sum-exp."""
    rows, tokens, channels = q.shape
    out_own, lse_own = attention_lse(q, k, v)
    flat_q = q.reshape(1, rows * tokens, channels)
    out_a, lse_a = attention_lse(flat_q, k_a, v_a)
    out_b, lse_b = attention_lse(flat_q, k_b, v_b)
    out_a, out_b = out_a.reshape(rows, tokens, channels), out_b.reshape(rows, tokens, channels)
    lse_a = lse_a.reshape(heads, rows, tokens).transpose(0, 1)
    lse_b = lse_b.reshape(heads, rows, tokens).transpose(0, 1)
    fused_a = merge_partial_attention(out_own, lse_own, out_a, lse_a, heads)
    fused_b = merge_partial_attention(out_own, lse_own, out_b, lse_b, heads)
    return torch.lerp(fused_a, fused_b, _row_weights(t, q))


def fused_inner_lse(q, k, v, k_a, v_a, k_b, v_b, t, attention_lse: AttentionLseFn, heads: int):
    """Fused AID-I from attention over own keys and over K*, merged by log-sum-exp."""
    k_star, v_star = interpolated_keys(k_a, v_a, k_b, v_b, t)
    out_own, lse_own = attention_lse(q, k, v)
    out_star, lse_star = attention_lse(q, k_star, v_star)
    return merge_partial_attention(out_own, lse_own, out_star, lse_star, heads)


def interpolate(mode: str, q, k, v, k_a, v_a, k_b, v_b, t, attention: AttentionFn,
                attention_lse: AttentionLseFn | None = None, heads: int | None = None):
    """Dispatch to one mode; fused modes use the log-sum-exp merge when `attention_lse` is given."""
    if mode == "fused outer":
        if attention_lse is not None:
            return fused_outer_lse(q, k, v, k_a, v_a, k_b, v_b, t, attention_lse, heads)
        return fused_outer(q, k, v, k_a, v_a, k_b, v_b, t, attention)
    if mode == "fused inner":
        if attention_lse is not None:
            return fused_inner_lse(q, k, v, k_a, v_a, k_b, v_b, t, attention_lse, heads)
        return fused_inner(q, k, v, k_a, v_a, k_b, v_b, t, attention)
    if mode == "outer":
        return outer(q, k_a, v_a, k_b, v_b, t, attention)
    if mode == "inner":
        return inner(q, k_a, v_a, k_b, v_b, t, attention)
    raise ValueError(f"unknown interpolation mode '{mode}', expected one of {', '.join(MODES)}.")


def attention_with_lse(q, k, v, heads: int, query_chunk: int = 1024):
    """Softmax attention and the log-sum-exp of its scaled scores, in pure torch, chunked over queries.

    q: [rows, Lq, heads*d], k/v: [rows or 1, Lk, heads*d] -> (out [rows, Lq, heads*d], lse [rows, heads, Lq]).
    Computes in float32; memory per chunk is rows * heads * query_chunk * Lk.
    """
    rows, q_tokens, channels = q.shape
    d = channels // heads
    scale = d ** -0.5
    qh = q.reshape(rows, q_tokens, heads, d).transpose(1, 2)
    kh = k.reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)
    vh = v.reshape(v.shape[0], v.shape[1], heads, d).transpose(1, 2)
    outs, lses = [], []
    for start in range(0, q_tokens, query_chunk):
        scores = torch.matmul(qh[:, :, start:start + query_chunk].float() * scale, kh.float().transpose(-1, -2))
        lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - lse.unsqueeze(-1))
        outs.append(torch.matmul(probs, vh.float()))
        lses.append(lse)
    out = torch.cat(outs, dim=2).transpose(1, 2).reshape(rows, q_tokens, channels).to(q.dtype)
    return out, torch.cat(lses, dim=2)
