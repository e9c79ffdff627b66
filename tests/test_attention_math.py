"""Each interpolation mode against a direct per-head formula on small tensors (algorithm.md section 3)."""
import pytest
import torch

from aid_pack.attention.interpolation import (attention_with_lse, interpolate, merge_partial_attention)

HEADS, DIM = 2, 4


def direct_attention(q, k, v):
    """softmax(Q K^T / sqrt(d)) V for one head: q [Lq, d], k/v [Lk, d]."""
    return torch.softmax(q @ k.T / DIM ** 0.5, dim=-1) @ v


def per_head(x, h):
    return x[..., h * DIM:(h + 1) * DIM]


def reference(mode, q, k, v, k_a, v_a, k_b, v_b, t):
    """The formulas of algorithm.md, computed row by row and head by head in float64."""
    rows = []
    for r in range(q.shape[0]):
        heads = []
        for h in range(HEADS):
            qh, kh, vh = per_head(q[r], h), per_head(k[r], h), per_head(v[r], h)
            kah, vah, kbh, vbh = per_head(k_a[0], h), per_head(v_a[0], h), per_head(k_b[0], h), per_head(v_b[0], h)
            tr = float(t[r])
            k_star, v_star = (1 - tr) * kah + tr * kbh, (1 - tr) * vah + tr * vbh
            if mode == "inner":
                out = direct_attention(qh, k_star, v_star)
            elif mode == "outer":
                out = (1 - tr) * direct_attention(qh, kah, vah) + tr * direct_attention(qh, kbh, vbh)
            elif mode == "fused inner":
                out = direct_attention(qh, torch.cat([kh, k_star]), torch.cat([vh, v_star]))
            else:
                out = ((1 - tr) * direct_attention(qh, torch.cat([kh, kah]), torch.cat([vh, vah]))
                       + tr * direct_attention(qh, torch.cat([kh, kbh]), torch.cat([vh, vbh])))
            heads.append(out)
        rows.append(torch.cat(heads, dim=-1))
    return torch.stack(rows)


def sdpa(q, k, v):
    """Plain multi-head attention on [rows, L, heads*d] (what optimized_attention computes)."""
    def split(x):
        return x.reshape(x.shape[0], x.shape[1], HEADS, DIM).transpose(1, 2)
    if k.shape[0] != q.shape[0]:
        k, v = k.expand(q.shape[0], -1, -1), v.expand(q.shape[0], -1, -1)
    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], HEADS * DIM)


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    rows, lq, lk = 3, 5, 6
    c = HEADS * DIM
    make = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = make(rows, lq, c), make(rows, lk, c), make(rows, lk, c)
    k_a, v_a, k_b, v_b = make(1, lk, c), make(1, lk, c), make(1, lk, c), make(1, lk, c)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    return q, k, v, k_a, v_a, k_b, v_b, t


@pytest.mark.parametrize("mode", ["inner", "outer", "fused inner", "fused outer"])
def test_mode_matches_direct_formula(mode, tensors):
    got = interpolate(mode, *tensors, attention=sdpa)
    assert torch.allclose(got, reference(mode, *tensors), atol=1e-10)


@pytest.mark.parametrize("mode", ["fused inner", "fused outer"])
def test_log_sum_exp_fusion_matches_direct_formula(mode, tensors):
    lse = lambda q, k, v: attention_with_lse(q, k, v, HEADS)  # noqa: E731
    got = interpolate(mode, *tensors, attention=sdpa, attention_lse=lse, heads=HEADS)
    # the log-sum-exp path computes in float32 whatever the input dtype
    assert torch.allclose(got, reference(mode, *tensors), atol=1e-5)


def test_attention_with_lse_returns_log_sum_exp_of_scaled_scores(tensors):
    q, k, v = tensors[:3]
    out, lse = attention_with_lse(q, k, v, HEADS, query_chunk=2)
    assert torch.allclose(out, sdpa(q, k, v), atol=1e-6)
    scores = per_head(q[1], 1) @ per_head(k[1], 1).T / DIM ** 0.5
    assert torch.allclose(lse[1, 1], torch.logsumexp(scores.float(), dim=-1), atol=1e-5)


def test_merge_of_partial_results_equals_attention_over_joined_keys(tensors):
    q, k, v, k_a, v_a = tensors[:5]
    k_a, v_a = k_a.expand(3, -1, -1), v_a.expand(3, -1, -1)
    out_1, lse_1 = attention_with_lse(q, k, v, HEADS)
    out_2, lse_2 = attention_with_lse(q, k_a, v_a, HEADS)
    merged = merge_partial_attention(out_1, lse_1, out_2, lse_2, HEADS)
    joined = sdpa(q, torch.cat([k, k_a], 1), torch.cat([v, v_a], 1))
    assert torch.allclose(merged, joined, atol=1e-6)


def test_endpoint_keys_joined_with_themselves_leave_attention_unchanged(tensors):
    """Why endpoints equal plain generations: at t = 0 and K_f = K_A, fused outer is plain attention."""
    q, k, v = tensors[:3]
    t = torch.zeros(3, dtype=torch.float64)
    for row in range(3):
        got = interpolate("fused outer", q[row:row + 1], k[row:row + 1], v[row:row + 1], k[row:row + 1],
                          v[row:row + 1], k[0:1], v[0:1], t[:1], attention=sdpa)
        assert torch.allclose(got, sdpa(q[row:row + 1], k[row:row + 1], v[row:row + 1]), atol=1e-12)


def test_unknown_mode_is_refused(tensors):
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        interpolate("sideways", *tensors, attention=sdpa)
