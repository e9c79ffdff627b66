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
three attentions over L keys instead of two over 2L. The lse attentions run in torch's fused
kernel that returns the log-sum-exp where the device has one (CPU flash, CUDA memory-efficient),
else in plain torch block by block with a running log-sum-exp, so their memory stays bounded
(LSE_BLOCK_BYTES of scores) at any size; they cannot go through the user's attention backend,
which returns no log-sum-exp.
"""
from __future__ import annotations

from dataclasses import dataclass
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


#: Bytes one block of the plain-torch log-sum-exp attention may hold in scores (float32, exp taken in place).
LSE_BLOCK_BYTES = 64 * 2 ** 20
#: Queries per block at most: past this, larger blocks save no time, they only hold more memory.
LSE_QUERY_BLOCK = 1024


@dataclass(frozen=True)
class AttentionBlocks:
    """How many rows, queries and keys one block of chunked attention covers."""

    rows: int
    queries: int
    keys: int


def plan_attention_blocks(rows: int, heads: int, q_tokens: int, k_tokens: int,
                          byte_budget: int = LSE_BLOCK_BYTES, bytes_per_score: int = 4) -> AttentionBlocks:
    """The largest blocks whose score tensor [rows, heads, queries, keys] fits in `byte_budget`.

    Queries come first (up to LSE_QUERY_BLOCK), then keys, then rows. A budget smaller than one
    score per head still gives 1 x 1 x 1 blocks (heads are never split).
    """
    per_row_head = max(1, byte_budget // (bytes_per_score * max(1, heads)))
    queries = max(1, min(q_tokens, LSE_QUERY_BLOCK, per_row_head))
    keys = max(1, min(k_tokens, per_row_head // queries))
    block_rows = max(1, min(rows, per_row_head // (queries * keys)))
    return AttentionBlocks(block_rows, queries, keys)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[batch, L, heads*d] -> [batch, heads, L, d] (a view)."""
    return x.reshape(x.shape[0], x.shape[1], heads, x.shape[2] // heads).transpose(1, 2)


def chunked_attention_with_lse(q, k, v, heads: int, byte_budget: int = LSE_BLOCK_BYTES):
    """Softmax attention and the log-sum-exp of its scaled scores in plain torch, in bounded memory.

    q: [rows, Lq, heads*d], k/v: [rows or 1, Lk, heads*d] -> (out [rows, Lq, heads*d], lse [rows, heads, Lq]).
    Works block by block (rows x queries x keys, see plan_attention_blocks) with a running
    (online) log-sum-exp over key blocks, so the scores held at once stay within `byte_budget`
    whatever the sizes. Computes in float32 (float64 inputs in float64). No keys: out 0, lse -inf.
    """
    rows, q_tokens, channels = q.shape
    k_tokens = k.shape[1]
    compute = torch.promote_types(q.dtype, torch.float32)
    scale = (channels // heads) ** -0.5
    qh, kh, vh = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    out = torch.zeros(rows, q_tokens, heads, channels // heads, dtype=compute, device=q.device)
    lse = torch.full((rows, heads, q_tokens), float("-inf"), dtype=compute, device=q.device)
    blocks = plan_attention_blocks(rows, heads, q_tokens, k_tokens, byte_budget, torch.finfo(compute).bits // 8)
    shared_keys = k.shape[0] == 1
    for r0 in range(0, rows, blocks.rows):
        r1 = min(rows, r0 + blocks.rows)
        k_rows = slice(0, 1) if shared_keys else slice(r0, r1)
        for q0 in range(0, q_tokens, blocks.queries):
            q1 = min(q_tokens, q0 + blocks.queries)
            q_block = qh[r0:r1, :, q0:q1].to(compute) * scale
            running_max = total = acc = None
            for k0 in range(0, k_tokens, blocks.keys):
                k1 = min(k_tokens, k0 + blocks.keys)
                scores = torch.matmul(q_block, kh[k_rows, :, k0:k1].to(compute).transpose(-1, -2))
                block_max = scores.amax(dim=-1)
                new_max = block_max if running_max is None else torch.maximum(running_max, block_max)
                probs = scores.sub_(new_max.unsqueeze(-1)).exp_()  # in place: one score-sized tensor per block
                block_sum = probs.sum(dim=-1)
                block_out = torch.matmul(probs, vh[k_rows, :, k0:k1].to(compute))
                del scores, probs
                if running_max is None:
                    total, acc = block_sum, block_out
                else:
                    correction = torch.exp(running_max - new_max)
                    total = total * correction + block_sum
                    acc = acc * correction.unsqueeze(-1) + block_out
                running_max = new_max
            if acc is not None:
                out[r0:r1, q0:q1] = (acc / total.unsqueeze(-1)).transpose(1, 2)
                lse[r0:r1, :, q0:q1] = running_max + torch.log(total)
    return out.reshape(rows, q_tokens, channels).to(q.dtype), lse


def fused_attention_with_lse(q, k, v, heads: int):
    """(out, lse) from one of torch's fused attention kernels that return the log-sum-exp, or None.

    CPU: aten._scaled_dot_product_flash_attention_for_cpu; CUDA: aten._scaled_dot_product_efficient_attention
    (its lse may be padded to a multiple of 32 queries; the padding is cut off). Both work in
    tiles, so their memory is bounded by the output. None when no kernel applies (another
    device, empty inputs, or the kernel refuses the shapes or dtype), so the caller falls back.
    """
    rows, q_tokens, channels = q.shape
    if rows == 0 or q_tokens == 0 or k.shape[1] == 0 or channels == 0:
        return None  # the CPU kernel crashes the process on empty sequences
    qh, kh, vh = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    if kh.shape[0] != rows:  # the CPU kernel reads past the end of a batch-1 key set instead of broadcasting it
        kh, vh = kh.expand(rows, -1, -1, -1), vh.expand(rows, -1, -1, -1)
    aten = torch.ops.aten
    try:
        if q.device.type == "cpu":
            out, lse = aten._scaled_dot_product_flash_attention_for_cpu(qh, kh, vh)[:2]
        elif q.device.type == "cuda":
            out, lse = aten._scaled_dot_product_efficient_attention(qh, kh, vh, None, True)[:2]
            lse = lse[..., :q_tokens]
        else:
            return None
    except (RuntimeError, NotImplementedError, AttributeError):
        return None
    if out.shape != qh.shape or lse.shape != (rows, heads, q_tokens):
        return None
    return out.transpose(1, 2).reshape(rows, q_tokens, channels).to(q.dtype), lse


def attention_with_lse(q, k, v, heads: int, byte_budget: int = LSE_BLOCK_BYTES, use_fused_kernel: bool = True):
    """Softmax attention and the log-sum-exp of its scaled scores, in memory bounded by `byte_budget`.

    q: [rows, Lq, heads*d], k/v: [rows or 1, Lk, heads*d] -> (out [rows, Lq, heads*d], lse [rows, heads, Lq]).
    Uses torch's fused kernel for the device where there is one (fused_attention_with_lse), else
    the chunked plain-torch computation (chunked_attention_with_lse).
    """
    if use_fused_kernel:
        fused = fused_attention_with_lse(q, k, v, heads)
        if fused is not None:
            return fused
    return chunked_attention_with_lse(q, k, v, heads, byte_budget)
