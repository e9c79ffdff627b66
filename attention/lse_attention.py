"""Softmax attention that also returns the log-sum-exp of its scaled scores, in bounded memory.

What the "lse" fusion of attention/interpolation.py needs: Attn(Q, [K1; K2]) is a merge of the
attentions over K1 and K2 alone weighted by their log-sum-exps, which no attention backend of
ComfyUI returns. Tensors are [rows, heads, tokens, dim_head], keys [rows or 1, heads, tokens,
dim_head] (one key set shared by every row). torch's fused kernel that returns the log-sum-exp runs
where the device has one (CPU flash, CUDA memory-efficient); else plain torch block by block with a
running log-sum-exp, so the scores held at once stay within LSE_BLOCK_BYTES at any size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

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


def chunked_attention_with_lse(q, k, v, byte_budget: int = LSE_BLOCK_BYTES):
    """Softmax attention and the log-sum-exp of its scaled scores in plain torch, in bounded memory.

    q [rows, heads, Lq, d], k/v [rows or 1, heads, Lk, d] -> (out [rows, heads, Lq, d], lse [rows, heads, Lq]).
    Works block by block (rows x queries x keys, see plan_attention_blocks) with a running (online)
    log-sum-exp over key blocks, so the scores held at once stay within `byte_budget` whatever the
    sizes. Computes in float32 (float64 inputs in float64); out comes back in q's dtype, lse in the
    compute dtype. No keys: out 0, lse -inf.
    """
    rows, heads, q_tokens, dim = q.shape
    k_tokens = k.shape[2]
    compute = torch.promote_types(q.dtype, torch.float32)
    scale = dim ** -0.5
    out = torch.zeros(rows, heads, q_tokens, dim, dtype=compute, device=q.device)
    lse = torch.full((rows, heads, q_tokens), float("-inf"), dtype=compute, device=q.device)
    blocks = plan_attention_blocks(rows, heads, q_tokens, k_tokens, byte_budget, torch.finfo(compute).bits // 8)
    shared_keys = k.shape[0] == 1
    for r0 in range(0, rows, blocks.rows):
        r1 = min(rows, r0 + blocks.rows)
        k_rows = slice(0, 1) if shared_keys else slice(r0, r1)
        for q0 in range(0, q_tokens, blocks.queries):
            q1 = min(q_tokens, q0 + blocks.queries)
            q_block = q[r0:r1, :, q0:q1].to(compute) * scale
            running_max = total = acc = None
            for k0 in range(0, k_tokens, blocks.keys):
                k1 = min(k_tokens, k0 + blocks.keys)
                scores = torch.matmul(q_block, k[k_rows, :, k0:k1].to(compute).transpose(-1, -2))
                block_max = scores.amax(dim=-1)
                new_max = block_max if running_max is None else torch.maximum(running_max, block_max)
                probs = scores.sub_(new_max.unsqueeze(-1)).exp_()  # in place: one score-sized tensor per block
                block_sum = probs.sum(dim=-1)
                block_out = torch.matmul(probs, v[k_rows, :, k0:k1].to(compute))
                del scores, probs
                if running_max is None:
                    total, acc = block_sum, block_out
                else:
                    correction = torch.exp(running_max - new_max)
                    total = total * correction + block_sum
                    acc = acc * correction.unsqueeze(-1) + block_out
                running_max = new_max
            if acc is not None:
                out[r0:r1, :, q0:q1] = acc / total.unsqueeze(-1)
                lse[r0:r1, :, q0:q1] = running_max + torch.log(total)
    return out.to(q.dtype), lse


def fused_attention_with_lse(q, k, v):
    """(out, lse) from one of torch's fused attention kernels that return the log-sum-exp, or None.

    q [rows, heads, Lq, d], k/v [rows or 1, heads, Lk, d]. CPU: aten._scaled_dot_product_flash_attention_for_cpu;
    CUDA: aten._scaled_dot_product_efficient_attention (its lse may be padded to a multiple of 32 queries;
    the padding is cut off). Both work in tiles, so their memory is bounded by the output. None when no
    kernel applies (another device, empty inputs, or the kernel refuses the shapes or dtype), so the
    caller falls back.
    """
    rows, heads, q_tokens, dim = q.shape
    if rows == 0 or q_tokens == 0 or k.shape[2] == 0 or dim == 0:
        return None  # the CPU kernel crashes the process on empty sequences
    if k.shape[0] != rows:  # the CPU kernel reads past the end of a batch-1 key set instead of broadcasting it
        k, v = k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)
    aten = torch.ops.aten
    try:
        if q.device.type == "cpu":
            out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[:2]
        elif q.device.type == "cuda":
            out, lse = aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
            lse = lse[..., :q_tokens]
        else:
            return None
    except (RuntimeError, NotImplementedError, AttributeError):
        return None
    if out.shape != q.shape or lse.shape != (rows, heads, q_tokens):
        return None
    return out.to(q.dtype), lse


def attention_with_lse(q, k, v, byte_budget: int = LSE_BLOCK_BYTES, use_fused_kernel: bool = True):
    """Softmax attention and the log-sum-exp of its scaled scores, in memory bounded by `byte_budget`.

    q [rows, heads, Lq, d], k/v [rows or 1, heads, Lk, d] -> (out [rows, heads, Lq, d], lse [rows, heads, Lq]).
    Uses torch's fused kernel for the device where there is one (fused_attention_with_lse), else the
    chunked plain-torch computation (chunked_attention_with_lse).
    """
    if use_fused_kernel:
        fused = fused_attention_with_lse(q, k, v)
        if fused is not None:
            return fused
    return chunked_attention_with_lse(q, k, v, byte_budget)
