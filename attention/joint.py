"""Interpolated joint attention of AID on diffusion transformers (dit.md, algorithm.md section 3).

Flux, SD3/SD3.5 and Qwen-Image attend over text and image tokens together, text first. Tensors here
are [rows, heads, tokens, dim_head]: `q`, `k`, `v` are the interior frames' own projections (one row per
frame), `k_a, v_a` and `k_b, v_b` endpoint A's and B's at the same block and step ([1, heads, tokens,
dim_head], shared by every row), `t` one coefficient per row. `interpolated` is the token range of the
endpoints' keys that takes part (the pack's `layers`: image tokens for "self only", text tokens for
"cross only", all of them for both).

Modes, with E = endpoint keys in `interpolated` and own = the frame's keys:
- fused outer: (1-t) Attn(Q, [own; E_A]) + t Attn(Q, [own; E_B])      (the default)
- fused inner: Attn(Q, [own; lerp(E_A, E_B, t)])
- outer:       (1-t) Attn(Q, [own outside the range; E_A]) + t Attn(Q, [own outside; E_B])
- inner:       Attn(Q, [own outside the range; lerp(E_A, E_B, t)])
With every token in the range, outer and inner are AID-O and AID-I exactly. Keys already carry their
positions (RoPE, or position embeddings added before the projection), and every row shares the same
positions, so joining key sets is sound; the order of keys does not matter to softmax attention.

`attention(q, k, v)` is the host's attention on these layouts, returning [rows, heads, tokens, dim_head].
Fused modes can instead merge per-set results by their log-sum-exp ("lse"): Attn(Q, [K1; K2]) =
(e^lse1 O1 + e^lse2 O2) / (e^lse1 + e^lse2), three attentions over L keys instead of two over 2L.
"""
from __future__ import annotations

from typing import Callable

import torch

from .interpolation import LSE_BLOCK_BYTES, MODES
from .interpolation import attention_with_lse as bounded_attention_with_lse

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
AttentionLseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# The pack's `layers` choice as a key subset of joint attention.
KEY_SUBSETS = {"self and cross": "all", "self only": "image", "cross only": "text"}


def interpolated_tokens(layers: str, tokens: int, text_tokens: int) -> slice:
    """The endpoint key tokens `layers` interpolates, for a sequence of `tokens` with `text_tokens` first."""
    subset = KEY_SUBSETS[layers]
    if subset == "all":
        return slice(0, tokens)
    if subset == "image":
        return slice(text_tokens, tokens)
    return slice(0, text_tokens)


def _weights(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Coefficients [rows] as [rows, 1, 1, 1] in the dtype and device of `like`."""
    return t.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)


def _outside(own: torch.Tensor, interpolated: slice) -> torch.Tensor:
    """The frame's own keys outside the interpolated range (what the non-fused modes keep)."""
    return torch.cat([own[:, :, :interpolated.start], own[:, :, interpolated.stop:]], dim=2)


def joined_key_set(mode: str, k, v, end_k, end_v, interpolated: slice):
    """One attention term's keys and values: the frame's own (all of them in fused modes, those outside the
    range otherwise) joined with endpoint keys `end_k`, `end_v` ([1 or rows, heads, range, d])."""
    rows = k.shape[0]
    end_k, end_v = end_k.expand(rows, *end_k.shape[1:]), end_v.expand(rows, *end_v.shape[1:])
    kept_k, kept_v = (k, v) if mode.startswith("fused") else (_outside(k, interpolated), _outside(v, interpolated))
    if kept_k.shape[2] == 0:
        return end_k, end_v
    return torch.cat([kept_k, end_k], dim=2), torch.cat([kept_v, end_v], dim=2)


def interpolated_endpoint(k_a, v_a, k_b, v_b, t, interpolated: slice):
    """K* = lerp(K_A, K_B, t) and V* likewise over the range, one row per coefficient."""
    w = _weights(t, k_a)
    rows = w.shape[0]
    k_a, v_a = k_a[:, :, interpolated], v_a[:, :, interpolated]
    k_b, v_b = k_b[:, :, interpolated], v_b[:, :, interpolated]
    return (torch.lerp(k_a.expand(rows, *k_a.shape[1:]), k_b.expand(rows, *k_b.shape[1:]), w),
            torch.lerp(v_a.expand(rows, *v_a.shape[1:]), v_b.expand(rows, *v_b.shape[1:]), w))


def check_mode(mode: str) -> None:
    """Raise ValueError for a mode that is not one of MODES."""
    if mode not in MODES:
        raise ValueError(f"unknown interpolation mode '{mode}', expected one of {', '.join(MODES)}.")


def interpolate_joint(mode: str, q, k, v, k_a, v_a, k_b, v_b, t, interpolated: slice, attention: AttentionFn):
    """Interpolated joint attention of the interior rows by joining key sets; -> [rows, heads, tokens, dim_head]."""
    check_mode(mode)
    if interpolated.stop <= interpolated.start:
        return attention(q, k, v)
    if mode.endswith("inner"):
        k_star, v_star = interpolated_endpoint(k_a, v_a, k_b, v_b, t, interpolated)
        return attention(q, *joined_key_set(mode, k, v, k_star, v_star, interpolated))
    # outer: one joined key set at a time, so the second is built after the first is released
    out_a = attention(q, *joined_key_set(mode, k, v, k_a[:, :, interpolated], v_a[:, :, interpolated], interpolated))
    out_b = attention(q, *joined_key_set(mode, k, v, k_b[:, :, interpolated], v_b[:, :, interpolated], interpolated))
    return torch.lerp(out_a, out_b, _weights(t, out_a))


def attention_with_lse(q, k, v, byte_budget: int = LSE_BLOCK_BYTES, use_fused_kernel: bool = True):
    """Softmax attention and the log-sum-exp of its scaled scores on the [rows, heads, tokens, d] layout.

    q [rows, heads, Lq, d], k/v [rows or 1, heads, Lk, d] -> (out [rows, heads, Lq, d], lse [rows, heads, Lq]),
    through attention/interpolation.py attention_with_lse: torch's fused kernel where the device has
    one, else plain torch in blocks of at most `byte_budget` bytes of scores.
    """
    heads = q.shape[1]

    def flat(x):
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)

    out, lse = bounded_attention_with_lse(flat(q), flat(k), flat(v), heads, byte_budget, use_fused_kernel)
    return out.reshape(q.shape[0], q.shape[2], heads, -1).transpose(1, 2), lse


def merge_by_lse(out_1, lse_1, out_2, lse_2):
    """Attention over [K1; K2] from the results over K1 and K2 alone ([rows, heads, Lq, d] and [rows, heads, Lq])."""
    weight_1 = torch.sigmoid(lse_1.float() - lse_2.float()).unsqueeze(-1)
    return out_2.float() + weight_1 * (out_1.float() - out_2.float())


def interpolate_joint_lse(mode: str, q, k, v, k_a, v_a, k_b, v_b, t, interpolated: slice,
                          attention_lse: AttentionLseFn = attention_with_lse):
    """Fused modes by log-sum-exp merging: own keys once, each endpoint set once; -> float32 [rows, heads, L, d]."""
    if not mode.startswith("fused"):
        raise ValueError(f"the log-sum-exp merge serves the fused modes, not '{mode}'.")
    out_own, lse_own = attention_lse(q, k, v)
    if interpolated.stop <= interpolated.start:
        return out_own
    if mode == "fused inner":
        out_star, lse_star = attention_lse(q, *interpolated_endpoint(k_a, v_a, k_b, v_b, t, interpolated))
        return merge_by_lse(out_own, lse_own, out_star, lse_star)
    out_a, lse_a = attention_lse(q, k_a[:, :, interpolated], v_a[:, :, interpolated])
    fused_a = merge_by_lse(out_own, lse_own, out_a, lse_a)
    del out_a, lse_a
    out_b, lse_b = attention_lse(q, k_b[:, :, interpolated], v_b[:, :, interpolated])
    fused_b = merge_by_lse(out_own, lse_own, out_b, lse_b)
    return torch.lerp(fused_a, fused_b, _weights(t, fused_a))
