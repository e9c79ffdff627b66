"""Each interpolation mode against a direct per-head formula on small tensors (docs/how-it-works.md)."""
import pytest
import torch

from aid_pack.attention import lse_attention
from aid_pack.attention.interpolation import heads_view, interpolate_tokens, merge_by_lse, tokens_view

HEADS, DIM = 2, 4


# These tests hold tensors as a UNet layer does, [rows, tokens, heads * d]; the core works on
# [rows, heads, tokens, d]. The adapters below are the only translation.

def on_tokens(lse_fn):
    """An lse attention of attention/lse_attention.py taking [rows, L, heads * d] tensors and `heads`."""
    def call(q, k, v, heads, *args, **kwargs):
        result = lse_fn(*(heads_view(x, heads) for x in (q, k, v)), *args, **kwargs)
        return None if result is None else (tokens_view(result[0]), result[1])

    return call


attention_with_lse = on_tokens(lse_attention.attention_with_lse)
chunked_attention_with_lse = on_tokens(lse_attention.chunked_attention_with_lse)
fused_attention_with_lse = on_tokens(lse_attention.fused_attention_with_lse)
plan_attention_blocks = lse_attention.plan_attention_blocks


def interpolate(mode, *tensors, attention, attention_lse=None):
    return interpolate_tokens(mode, *tensors, attention, HEADS, attention_lse=attention_lse)


def merge_partial_attention(out_1, lse_1, out_2, lse_2, heads):
    return tokens_view(merge_by_lse(heads_view(out_1, heads), lse_1, heads_view(out_2, heads), lse_2)).to(out_1.dtype)


def direct_attention(q, k, v):
    """softmax(Q K^T / sqrt(d)) V for one head: q [Lq, d], k/v [Lk, d]."""
    return torch.softmax(q @ k.T / DIM ** 0.5, dim=-1) @ v


def per_head(x, h):
    return x[..., h * DIM:(h + 1) * DIM]


def reference(mode, q, k, v, k_a, v_a, k_b, v_b, t):
    """The formulas of docs/how-it-works.md, computed row by row and head by head in float64."""
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
    got = interpolate(mode, *tensors, attention=sdpa, attention_lse=lse_attention.attention_with_lse)
    # the log-sum-exp path computes in float32 whatever the input dtype
    assert torch.allclose(got, reference(mode, *tensors), atol=1e-5)


def test_attention_with_lse_returns_log_sum_exp_of_scaled_scores(tensors):
    q, k, v = tensors[:3]
    out, lse = attention_with_lse(q, k, v, HEADS, byte_budget=2 * 4 * HEADS * 8, use_fused_kernel=False)
    assert torch.allclose(out, sdpa(q, k, v), atol=1e-6)
    scores = per_head(q[1], 1) @ per_head(k[1], 1).T / DIM ** 0.5
    assert torch.allclose(lse[1, 1], torch.logsumexp(scores, dim=-1), atol=1e-12)


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


# ---------------------------------------------------------------- the log-sum-exp attention itself

from hypothesis import given, settings, strategies as st  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


def reference_attention_with_lse(q, k, v, heads):
    """softmax(Q K^T / sqrt(d)) V and logsumexp of the scaled scores, all at once in float64."""
    def split(x):
        return x.double().reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)
    qh, kh, vh = split(q), split(k), split(v)
    scores = qh @ kh.transpose(-1, -2) / qh.shape[-1] ** 0.5
    out = torch.softmax(scores, dim=-1) @ vh
    return out.transpose(1, 2).reshape(q.shape), torch.logsumexp(scores, dim=-1)


@pytest.mark.parametrize("budget", [1, 64, 4096, 10 ** 9])
@pytest.mark.parametrize("shared_keys", [False, True])
def test_chunked_attention_is_exact_for_every_block_size(budget, shared_keys):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 9, HEADS * DIM, generator=g, dtype=torch.float64)
    k = 3 * torch.randn(1 if shared_keys else 3, 11, HEADS * DIM, generator=g, dtype=torch.float64)
    v = torch.randn(k.shape, generator=g, dtype=torch.float64)
    out, lse = chunked_attention_with_lse(q, k, v, HEADS, byte_budget=budget)
    want_out, want_lse = reference_attention_with_lse(q, k, v, HEADS)
    assert out.dtype == torch.float64 and torch.allclose(out, want_out, atol=1e-12)
    assert lse.shape == (3, HEADS, 9) and torch.allclose(lse, want_lse, atol=1e-12)


def test_fused_kernel_matches_the_chunked_computation_and_keeps_the_input_dtype(tensors):
    q, k, v = (x.float() for x in tensors[:3])
    fused = fused_attention_with_lse(q, k, v, HEADS)
    assert fused is not None, "torch's CPU flash kernel returns the log-sum-exp on this torch"
    chunked = chunked_attention_with_lse(q, k, v, HEADS)
    assert fused[0].dtype == torch.float32 and torch.allclose(fused[0], chunked[0], atol=1e-6)
    assert torch.allclose(fused[1], chunked[1], atol=1e-5)


def test_fused_kernel_broadcasts_a_shared_key_set_correctly(tensors):
    """The CPU kernel reads garbage for a batch-1 key set unless it is expanded first."""
    q, _, _, k_a, v_a = (x.float() for x in tensors[:5])
    out, lse = fused_attention_with_lse(q, k_a, v_a, HEADS)
    want_out, want_lse = reference_attention_with_lse(q, k_a, v_a, HEADS)
    assert torch.allclose(out.double(), want_out, atol=1e-5) and torch.allclose(lse.double(), want_lse, atol=1e-5)


def test_empty_key_set_merges_as_nothing_and_empty_queries_do_not_reach_the_kernel(tensors):
    q, k, v = tensors[:3]
    assert fused_attention_with_lse(q[:, :0], k, v, HEADS) is None  # the CPU kernel kills the process here
    out, lse = attention_with_lse(q[:, :0], k, v, HEADS)
    assert out.shape == (3, 0, HEADS * DIM) and lse.shape == (3, HEADS, 0)
    out_empty, lse_empty = attention_with_lse(q, k[:, :0], v[:, :0], HEADS)
    assert torch.isneginf(lse_empty).all()
    out_own, lse_own = attention_with_lse(q, k, v, HEADS)
    merged = merge_partial_attention(out_own, lse_own, out_empty, lse_empty, HEADS)
    assert torch.allclose(merged, out_own, atol=1e-12)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation allocates while active (views of inputs excluded)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        for item in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(item, torch.Tensor) and item.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, item.untyped_storage().nbytes())
        return result


def test_chunked_attention_never_holds_more_than_its_budget_in_scores():
    """Issue 10: the previous code held [rows, heads, 1024, Lk] scores (here 3 x 2 x 64 x 256 floats = 384 KiB)."""
    g = torch.Generator().manual_seed(2)
    q = torch.randn(3, 64, HEADS * DIM, generator=g)
    k, v = torch.randn(3, 256, HEADS * DIM, generator=g), torch.randn(3, 256, HEADS * DIM, generator=g)
    output_bytes = q.numel() * 4
    budget = 8 * 1024
    with LargestTensor() as probe:
        out, _ = chunked_attention_with_lse(q, k, v, HEADS, byte_budget=budget)
    assert probe.largest <= max(budget, output_bytes), probe.largest
    assert torch.allclose(out.double(), reference_attention_with_lse(q, k, v, HEADS)[0], atol=1e-5)


@PROPERTY_SETTINGS
@given(rows=st.integers(1, 64), heads=st.integers(1, 32), q_tokens=st.integers(1, 10 ** 5),
       k_tokens=st.integers(1, 10 ** 5), budget=st.integers(1, 2 ** 32))
def test_planned_blocks_fit_the_budget_and_the_problem(rows, heads, q_tokens, k_tokens, budget):
    blocks = plan_attention_blocks(rows, heads, q_tokens, k_tokens, budget)
    assert 1 <= blocks.rows <= rows and 1 <= blocks.queries <= q_tokens and 1 <= blocks.keys <= k_tokens
    assert blocks.rows * heads * blocks.queries * blocks.keys * 4 <= max(budget, heads * 4)
    if rows * heads * q_tokens * k_tokens * 4 <= budget and q_tokens <= 1024:  # everything fits: one block
        assert (blocks.rows, blocks.queries, blocks.keys) == (rows, q_tokens, k_tokens)


@PROPERTY_SETTINGS
@given(rows=st.integers(1, 4), heads=st.integers(1, 3), dim=st.integers(1, 5), q_tokens=st.integers(1, 20),
       k_tokens=st.integers(1, 20), shared=st.booleans(), budget=st.integers(1, 5000), scale=st.floats(0.1, 20.0),
       seed=st.integers(0, 2 ** 16))
def test_chunked_and_fused_attention_equal_softmax_attention(rows, heads, dim, q_tokens, k_tokens, shared, budget,
                                                             scale, seed):
    g = torch.Generator().manual_seed(seed)
    c = heads * dim
    q = scale * torch.randn(rows, q_tokens, c, generator=g, dtype=torch.float64)
    k = torch.randn(1 if shared else rows, k_tokens, c, generator=g, dtype=torch.float64)
    v = torch.randn(k.shape, generator=g, dtype=torch.float64)
    want_out, want_lse = reference_attention_with_lse(q, k, v, heads)
    out, lse = chunked_attention_with_lse(q, k, v, heads, byte_budget=budget)
    assert torch.allclose(out, want_out, atol=1e-10) and torch.allclose(lse, want_lse, atol=1e-10)
    fused = fused_attention_with_lse(q.float(), k.float(), v.float(), heads)
    if fused is not None:
        assert torch.allclose(fused[0].double(), want_out, atol=1e-4)
        assert torch.allclose(fused[1].double(), want_lse, rtol=1e-5, atol=1e-4)
