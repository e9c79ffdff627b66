"""The one attention core (attention/interpolation.py) against the two it replaced, old and new side by side.

Before issue 23 the mode algebra existed twice: once on a UNet's [rows, tokens, heads * d] tensors and once
on a DiT's [rows, heads, tokens, d] (attention/joint.py). The formulas of both are frozen below, verbatim in
what they compute, so the new core must give the same numbers: exactly where key sets are joined
("concat": the same tensors reach the same attention function), to float rounding where partial results are
merged by log-sum-exp (the new core casts back once, at the end, where the UNet copy cast after each merge).
"""
from functools import partial

import pytest
import torch

from aid_pack.attention.interpolation import (MODES, attention_on_tokens, heads_view, interpolate, interpolate_tokens,
                                              tokens_view)
from aid_pack.attention.layout import FrameLayout
from aid_pack.attention.rows import RowPlans, attend_rows
from aid_pack.attention.joint_override import interpolated_tokens
from aid_pack.attention.lse_attention import attention_with_lse

HEADS, DIM = 2, 4


# ---------------------------------------------------------------- the old UNet formulas ([rows, tokens, C])

def old_unet(mode, q, k, v, k_a, v_a, k_b, v_b, t, attention, attention_lse=None):
    """attention/interpolation.py before issue 23, all four modes and the lse fusion, on [rows, tokens, C]."""
    w = t.to(q.dtype).reshape(-1, 1, 1)
    rows, tokens, channels = q.shape

    def shared(q_, k_, v_):  # one key set for every row: queries folded into one batch
        return attention(q_.reshape(1, rows * tokens, channels), k_, v_).reshape(rows, tokens, channels)

    def join(own, end):
        return torch.cat([own, end.expand(own.shape[0], -1, -1)], dim=1)

    k_star, v_star = torch.lerp(k_a, k_b, w), torch.lerp(v_a, v_b, w)
    if attention_lse is not None:
        def merge(o1, l1, o2, l2):
            w1 = torch.sigmoid(l1.float() - l2.float()).transpose(1, 2).unsqueeze(-1)
            o1, o2 = o1.reshape(rows, tokens, HEADS, -1), o2.reshape(rows, tokens, HEADS, -1)
            return (o2.float() + w1 * (o1.float() - o2.float())).reshape(rows, tokens, channels).to(q.dtype)

        out_own, lse_own = attention_lse(q, k, v)
        if mode == "fused inner":
            return merge(out_own, lse_own, *attention_lse(q, k_star, v_star))
        flat = q.reshape(1, rows * tokens, channels)
        fused = []
        for k_e, v_e in ((k_a, v_a), (k_b, v_b)):
            out_e, lse_e = attention_lse(flat, k_e, v_e)
            fused.append(merge(out_own, lse_own, out_e.reshape(rows, tokens, channels),
                               lse_e.reshape(HEADS, rows, tokens).transpose(0, 1)))
        return torch.lerp(fused[0], fused[1], w)
    if mode == "fused outer":
        return torch.lerp(attention(q, join(k, k_a), join(v, v_a)), attention(q, join(k, k_b), join(v, v_b)), w)
    if mode == "fused inner":
        return attention(q, torch.cat([k, k_star], 1), torch.cat([v, v_star], 1))
    if mode == "outer":
        return torch.lerp(shared(q, k_a, v_a), shared(q, k_b, v_b), w)
    return attention(q, k_star, v_star)


# ---------------------------------------------------------------- the old DiT formulas ([rows, heads, tokens, d])

def old_joint(mode, q, k, v, k_a, v_a, k_b, v_b, t, keys: slice, attention, attention_lse=None):
    """attention/joint.py before issue 23: interpolate_joint and interpolate_joint_lse."""
    w = t.to(q.dtype).reshape(-1, 1, 1, 1)
    rows = q.shape[0]
    if keys.stop <= keys.start:
        return attention(q, k, v)
    ends = [x[:, :, keys].expand(rows, -1, -1, -1) for x in (k_a, v_a, k_b, v_b)]
    k_star, v_star = torch.lerp(ends[0], ends[2], w), torch.lerp(ends[1], ends[3], w)
    if attention_lse is not None:
        def merge(o1, l1, o2, l2):
            return o2.float() + torch.sigmoid(l1.float() - l2.float()).unsqueeze(-1) * (o1.float() - o2.float())

        out_own, lse_own = attention_lse(q, k, v)
        if mode == "fused inner":
            return merge(out_own, lse_own, *attention_lse(q, k_star, v_star)).to(q.dtype)
        fused_a = merge(out_own, lse_own, *attention_lse(q, ends[0], ends[1]))
        fused_b = merge(out_own, lse_own, *attention_lse(q, ends[2], ends[3]))
        return torch.lerp(fused_a, fused_b, w.float()).to(q.dtype)
    if mode.startswith("fused"):
        own_k, own_v = k, v
    else:
        own_k = torch.cat([k[:, :, :keys.start], k[:, :, keys.stop:]], dim=2)
        own_v = torch.cat([v[:, :, :keys.start], v[:, :, keys.stop:]], dim=2)

    def joined(end_k, end_v):
        if own_k.shape[2] == 0:
            return end_k, end_v
        return torch.cat([own_k, end_k], dim=2), torch.cat([own_v, end_v], dim=2)

    if mode.endswith("inner"):
        return attention(q, *joined(k_star, v_star))
    return torch.lerp(attention(q, *joined(ends[0], ends[1])), attention(q, *joined(ends[2], ends[3])), w)


# ---------------------------------------------------------------- attention functions and tensors

def sdpa_tokens(q, k, v):
    """ComfyUI's optimized attention as a UNet layer calls it: [rows, L, heads * d] in and out."""
    if k.shape[0] != q.shape[0]:
        k, v = k.expand(q.shape[0], -1, -1), v.expand(q.shape[0], -1, -1)
    out = torch.nn.functional.scaled_dot_product_attention(*(heads_view(x, HEADS) for x in (q, k, v)))
    return tokens_view(out)


def sdpa(q, k, v):
    if k.shape[0] != q.shape[0]:
        k, v = k.expand(q.shape[0], -1, -1, -1), v.expand(q.shape[0], -1, -1, -1)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def lse_tokens(q, k, v):
    """The lse attention on [rows, L, heads * d], as the old UNet path called it."""
    out, lse = attention_with_lse(*(heads_view(x, HEADS) for x in (q, k, v)))
    return tokens_view(out), lse


def tensors(layout, rows, dtype, seed=0, q_tokens=5, k_tokens=6):
    g = torch.Generator().manual_seed(seed)

    def make(batch, tokens):
        shape = (batch, tokens, HEADS * DIM) if layout == "tokens" else (batch, HEADS, tokens, DIM)
        return torch.randn(*shape, generator=g).to(dtype)

    q, k, v = make(rows, q_tokens), make(rows, k_tokens), make(rows, k_tokens)
    ends = [make(1, k_tokens) for _ in range(4)]
    t = torch.linspace(0.1, 0.9, rows)
    return q, k, v, ends, t


DTYPES = [torch.float32, torch.float16, torch.float64]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_unet_path_joins_key_sets_exactly_as_before(mode, rows, dtype):
    q, k, v, ends, t = tensors("tokens", rows, dtype)
    new = interpolate_tokens(mode, q, k, v, *ends, t, sdpa_tokens, HEADS)
    old = old_unet(mode, q, k, v, *ends, t, sdpa_tokens)
    assert new.shape == old.shape and new.dtype == old.dtype
    assert torch.equal(new, old)


@pytest.mark.parametrize("mode", ["fused outer", "fused inner"])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_unet_path_merges_by_log_sum_exp_as_before_to_float_rounding(mode, rows, dtype):
    q, k, v, ends, t = tensors("tokens", rows, dtype)
    new = interpolate_tokens(mode, q, k, v, *ends, t, sdpa_tokens, HEADS, attention_lse=attention_with_lse)
    old = old_unet(mode, q, k, v, *ends, t, sdpa_tokens, attention_lse=lse_tokens)
    assert new.dtype == old.dtype == dtype
    # the old path rounded to the input dtype after each merge, the new one once at the end
    tolerance = {torch.float16: 2e-3, torch.float32: 1e-6, torch.float64: 1e-6}[dtype]
    assert torch.allclose(new.double(), old.double(), atol=tolerance, rtol=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers", ["self and cross", "self only", "cross only"])
@pytest.mark.parametrize("text", [0, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dit_path_joins_key_sets_exactly_as_before(mode, layers, text, dtype):
    q, k, v, ends, t = tensors("heads", 3, dtype, q_tokens=6)
    keys = interpolated_tokens(layers, 6, text)
    new = interpolate(mode, q, k, v, *ends, t, sdpa, interpolated=keys)
    old = old_joint(mode, q, k, v, *ends, t, keys, sdpa)
    assert torch.equal(new, old)


@pytest.mark.parametrize("mode", ["fused outer", "fused inner"])
@pytest.mark.parametrize("layers", ["self and cross", "self only", "cross only"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dit_path_merges_by_log_sum_exp_as_before_to_float_rounding(mode, layers, dtype):
    q, k, v, ends, t = tensors("heads", 3, dtype, q_tokens=6)
    keys = interpolated_tokens(layers, 6, 2)
    new = interpolate(mode, q, k, v, *ends, t, sdpa, attention_lse=attention_with_lse, interpolated=keys)
    old = old_joint(mode, q, k, v, *ends, t, keys, sdpa, attention_lse=attention_with_lse)
    assert new.dtype == old.dtype == dtype
    tolerance = {torch.float16: 2e-3, torch.float32: 1e-6, torch.float64: 1e-6}[dtype]
    assert torch.allclose(new.double(), old.double(), atol=tolerance, rtol=0)


def test_unet_layout_is_the_full_token_range_case_of_the_dit_layout():
    """One core: a UNet's tensors seen as heads give what the DiT path gives with every key token interpolated."""
    q, k, v, ends, t = tensors("tokens", 3, torch.float64)
    for mode in MODES:
        unet = interpolate_tokens(mode, q, k, v, *ends, t, sdpa_tokens, HEADS)
        views = [heads_view(x, HEADS) for x in (q, k, v, *ends)]
        dit = interpolate(mode, *views, t, sdpa, interpolated=slice(0, k.shape[1]))
        assert torch.allclose(tokens_view(dit), unet, atol=1e-12)


# ---------------------------------------------------------------- the per-segment loop, once (attention/rows.py)

KEYFRAMES = FrameLayout(((0, 1, 0.0), (0, 1, 0.4), (0, 1, 0.7), (0, 1, 1.0), (1, 2, 0.5), (1, 2, 1.0)))


def old_segment_loop(mode, layout, positive, q, k, v, attention):
    """How attention/patch.py walked the rows before issue 23: plain rows by an index, then every segment."""
    frames = layout.frames
    segments = layout.segments()
    interior = {c * frames + row for c, p in enumerate(positive) if p for members in segments.values()
                for row, _ in members}
    out = torch.empty_like(q)
    plain = sorted(set(range(q.shape[0])) - interior)
    out[plain] = attention(q[plain], k[plain], v[plain])
    for chunk, is_positive in enumerate(positive):
        if not is_positive:
            continue
        base = chunk * frames
        for (row_a, row_b), members in segments.items():
            rows = [base + row for row, _ in members]
            t = torch.tensor([t for _, t in members])
            a, b = slice(base + row_a, base + row_a + 1), slice(base + row_b, base + row_b + 1)
            out[rows] = old_unet(mode, q[rows], k[rows], v[rows], k[a], v[a], k[b], v[b], t, attention)
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", [FrameLayout.between((0.0, 0.2, 0.5, 0.9, 1.0)), KEYFRAMES])
@pytest.mark.parametrize("positive", [(True,), (False, True), (True, True, False)])
def test_one_row_plan_walks_the_rows_exactly_as_the_old_loop(mode, layout, positive):
    rows = layout.frames * len(positive)
    q, k, v, _, _ = tensors("tokens", rows, torch.float32)
    plans = RowPlans(layout)
    plan = plans.get(positive, q.device)
    assert plans.get(list(positive), "cpu") is plan, "the plan is made once per chunks and device"
    on_heads = attention_on_tokens(sdpa_tokens, HEADS)
    new = tokens_view(attend_rows(plan, *(heads_view(x, HEADS) for x in (q, k, v)), on_heads,
                                  partial(interpolate, mode, attention=on_heads)))
    assert torch.equal(new, old_segment_loop(mode, layout, positive, q, k, v, sdpa_tokens))
