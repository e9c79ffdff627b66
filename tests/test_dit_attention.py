"""Interpolated joint attention (attention/interpolation.py on the DiT layout) and its override, on plain tensors and ComfyUI's attention.

The math is checked against the formulas of docs/diffusion-transformers.md computed head by head in float64; the override is
called the way the host calls it (comfy/ldm/modules/attention.py wrap_attn routes a backend call made
with transformer_options to it), on the layouts Flux/Qwen-Image ([B, heads, L, d]) and SD3
([B, L, heads*d]) pass.
"""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from aid_pack.attention.branches import POSITIVE_UUIDS
from aid_pack.attention.interpolation import interpolate
from aid_pack.attention.lse_attention import attention_with_lse
from aid_pack.attention.joint_override import (IMAGE_TOKENS, TEXT_TOKENS, JointAttentionOverride, JointMaskError,
                                               JointTargets, interpolated_tokens)
from aid_pack.attention.layout import FrameLayout
from aid_pack.attention.patch import FrameCountError, InterpolationSettings

MODES = ("fused outer", "fused inner", "outer", "inner")
HEADS, DIM = 2, 4


def direct(q, k, v):
    """softmax(q k^T / sqrt(d)) v for one head."""
    return torch.softmax(q @ k.T / q.shape[-1] ** 0.5, dim=-1) @ v


def reference(mode, q, k, v, k_a, v_a, k_b, v_b, t, keys: slice):
    """docs/diffusion-transformers.md's formulas row by row and head by head: own keys (outside the range for non-fused modes) joined
    with the endpoints' keys in the range (lerped for the inner modes)."""
    out = torch.empty_like(q)
    tokens = k.shape[2]
    inside = torch.zeros(tokens, dtype=torch.bool)
    inside[keys] = True
    for r in range(q.shape[0]):
        tr = float(t[r])
        for h in range(q.shape[1]):
            own = (k[r, h], v[r, h]) if mode.startswith("fused") else (k[r, h][~inside], v[r, h][~inside])
            ka, va, kb, vb = k_a[0, h][inside], v_a[0, h][inside], k_b[0, h][inside], v_b[0, h][inside]

            def term(end_k, end_v):
                return direct(q[r, h], torch.cat([own[0], end_k]), torch.cat([own[1], end_v]))

            if mode.endswith("outer"):
                out[r, h] = (1 - tr) * term(ka, va) + tr * term(kb, vb)
            else:
                out[r, h] = term((1 - tr) * ka + tr * kb, (1 - tr) * va + tr * vb)
    return out


def sdpa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def make(rows=3, tokens=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    q, k, v = (rand(rows, HEADS, tokens, DIM) for _ in range(3))
    ends = tuple(rand(1, HEADS, tokens, DIM) for _ in range(4))
    t = torch.linspace(0.2, 0.8, rows)
    return q, k, v, ends, t


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers", ["self and cross", "self only", "cross only"])
def test_joined_key_sets_follow_the_formulas(mode, layers):
    q, k, v, ends, t = make()
    keys = interpolated_tokens(layers, 7, text_tokens=3)
    got = interpolate(mode, q, k, v, *ends, t, sdpa, interpolated=keys)
    assert torch.allclose(got, reference(mode, q, k, v, *ends, t, keys), atol=1e-10)


def test_layers_choose_image_text_or_all_endpoint_keys():
    assert interpolated_tokens("self only", 10, 4) == slice(4, 10)
    assert interpolated_tokens("cross only", 10, 4) == slice(0, 4)
    assert interpolated_tokens("self and cross", 10, 4) == slice(0, 10)
    # an image-only attention (SD3.5's second attention) has no text tokens: nothing to interpolate for "cross"
    assert interpolated_tokens("cross only", 10, 0) == slice(0, 0)


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(["fused outer", "fused inner"]), text=st.integers(0, 6), seed=st.integers(0, 10_000),
       layers=st.sampled_from(["self and cross", "self only", "cross only"]))
def test_log_sum_exp_merge_equals_joined_key_sets(mode, text, seed, layers):
    q, k, v, ends, t = make(rows=2, tokens=6, seed=seed)
    keys = interpolated_tokens(layers, 6, text)
    joined = interpolate(mode, q, k, v, *ends, t, sdpa, interpolated=keys)
    merged = interpolate(mode, q, k, v, *ends, t, sdpa, attention_lse=attention_with_lse, interpolated=keys)
    assert torch.allclose(joined, merged.to(joined.dtype), atol=1e-5)


@pytest.mark.parametrize("fused_kernel", [True, False])
def test_lse_attention_is_softmax_attention_on_the_dit_layout(fused_kernel):
    """[rows, heads, L, d] through the pack's bounded lse attention: torch's kernel, or blocks of 2 x 3 scores."""
    q, k, v, ends, _ = make(rows=2, tokens=9, dtype=torch.float32)
    expected_lse = torch.logsumexp(q @ k.transpose(-1, -2) / DIM ** 0.5, dim=-1)
    out, lse = attention_with_lse(q, k, v, byte_budget=4 * HEADS * 6, use_fused_kernel=fused_kernel)
    assert out.shape == q.shape and torch.allclose(out, sdpa(q, k, v), atol=1e-5)
    assert torch.allclose(lse, expected_lse, atol=1e-5)
    shared_k, shared_v = ends[0].float(), ends[1].float()  # one endpoint's keys for every row
    out, _ = attention_with_lse(q, shared_k, shared_v, byte_budget=4 * HEADS * 6, use_fused_kernel=fused_kernel)
    assert torch.allclose(out, sdpa(q, shared_k.expand(2, -1, -1, -1), shared_v.expand(2, -1, -1, -1)), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the override, through ComfyUI's own dispatch
# ---------------------------------------------------------------------------------------------

COEFFICIENTS = (0.0, 0.25, 0.75, 1.0)


def call_options(override, positive=(False, True), block_type="double", sigma=5.0, text=3, image=None):
    """transformer_options as a sampling run passes them to the blocks (one uuid per chunk)."""
    uuids = [f"entry-{i}" for i in range(len(positive))]
    options = {"optimized_attention_override": override, "uuids": uuids, "cond_or_uncond": list(range(len(positive))),
               POSITIVE_UUIDS: frozenset(u for u, p in zip(uuids, positive) if p), "sigmas": torch.tensor([sigma]),
               "block_type": block_type, "block_index": 0, TEXT_TOKENS: text}
    if image is not None:
        options[IMAGE_TOKENS] = image
    return options


def override_for(mode="fused outer", layers="self and cross", blocks="all", fusion="concat", previous=None, **kw):
    settings_ = InterpolationSettings(COEFFICIENTS, mode=mode, sigma_start=10.0, sigma_end=1.0, fusion=fusion, **kw)
    return JointAttentionOverride(settings_, JointTargets(layers, blocks), previous)


def host_attention(q, k, v, options, **kwargs):
    """A backend call as Flux makes it: ComfyUI's SDPA attention, wrapped by wrap_attn, skip_reshape=True."""
    from comfy.ldm.modules.attention import attention_pytorch

    return attention_pytorch(q, k, v, HEADS, skip_reshape=True, transformer_options=options, **kwargs)


def batch(chunks=2, tokens=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(chunks * len(COEFFICIENTS), HEADS, tokens, DIM, generator=g) for _ in range(3))


def plain(q, k, v):
    return sdpa(q, k, v).transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def test_override_interpolates_only_interior_rows_of_positive_chunks():
    q, k, v = batch()
    override = override_for()
    out = host_attention(q, k, v, call_options(override, positive=(False, True)))
    expected = plain(q, k, v)
    changed = [not torch.allclose(out[r], expected[r], atol=1e-6) for r in range(8)]
    assert changed == [False, False, False, False, False, True, True, False]  # negative chunk, then A f1 f2 B
    keys = slice(0, 7)
    interior = reference("fused outer", q[5:7], k[5:7], v[5:7], k[4:5], v[4:5], k[7:8], v[7:8],
                         torch.tensor([0.25, 0.75]), keys)
    assert torch.allclose(out[5:7], interior.transpose(1, 2).reshape(2, 7, -1), atol=1e-6)


@pytest.mark.parametrize("case", ["outside the sigma window", "other block type", "inactive", "no text to pick"])
def test_override_leaves_attention_plain_where_it_does_not_apply(case):
    q, k, v = batch()
    override = override_for(layers="cross only" if case == "no text to pick" else "self and cross",
                            blocks="single" if case == "other block type" else "all",
                            active=case != "inactive")
    options = call_options(override, sigma=0.5 if case == "outside the sigma window" else 5.0,
                           image=7 if case == "no text to pick" else None)
    assert torch.allclose(host_attention(q, k, v, options), plain(q, k, v), atol=1e-6)


def test_sd3_layout_gives_the_same_rows_as_the_flux_layout():
    """SD3 passes [B, L, heads*d] without skip_reshape; the override answers in that layout."""
    from comfy.ldm.modules.attention import attention_pytorch

    q, k, v = batch()
    override = override_for(layers="self only")
    flux = host_attention(q, k, v, call_options(override))
    flat = [x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1) for x in (q, k, v)]
    sd3 = attention_pytorch(*flat, heads=HEADS, transformer_options=call_options(override))
    assert sd3.shape == flux.shape and torch.allclose(sd3, flux, atol=1e-6)


def test_lse_fusion_matches_concat_through_the_override():
    q, k, v = batch()
    concat = host_attention(q, k, v, call_options(override_for()))
    lse = host_attention(q, k, v, call_options(override_for(fusion="lse")))
    assert torch.allclose(concat, lse, atol=1e-5)


def test_previous_override_is_called_for_every_attention():
    calls = []

    def previous(func, *args, **kwargs):
        calls.append(args[0].shape[0])
        return func(*args, **kwargs)

    q, k, v = batch()
    out = host_attention(q, k, v, call_options(override_for(previous=previous)))
    assert calls == [6, 2, 2]  # plain rows, then the interior rows against A's and B's joined keys
    assert torch.allclose(out, host_attention(q, k, v, call_options(override_for())), atol=1e-6)


def test_batch_of_another_schedule_and_masks_are_refused():
    q, k, v = batch()
    with pytest.raises(FrameCountError, match="not 4 frames each as the schedule says"):
        host_attention(q[:6], k[:6], v[:6], call_options(override_for()))
    with pytest.raises(JointMaskError, match="attention mask.*Fix: remove the attention mask"):
        host_attention(q, k, v, call_options(override_for()), mask=torch.zeros(7, 7))


# keys K0 K1 K2: two frames between K0 and K1, one between K1 and K2, a closing frame K2 -> K0
THREE_KEYS = FrameLayout(((0, 1, 0.0), (0, 1, 0.3), (0, 1, 0.6), (0, 1, 1.0), (1, 2, 0.5), (1, 2, 1.0),
                          (2, 0, 0.5)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fusion", ["concat", "lse"])
def test_each_keyframe_segment_is_the_two_endpoint_interpolation_of_its_keys(mode, fusion):
    """The rows of a three-key batch come out as the two-key runs [K_a, frames..., K_b] of their segments."""
    frames = THREE_KEYS.frames
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2 * frames, HEADS, 7, DIM, generator=g) for _ in range(3))
    settings_ = InterpolationSettings(THREE_KEYS.coefficients, mode=mode, sigma_start=10.0, sigma_end=1.0,
                                      fusion=fusion, layout=THREE_KEYS)
    out = host_attention(q, k, v, call_options(JointAttentionOverride(settings_)))
    positive = slice(frames, 2 * frames)
    qp, kp, vp, got = q[positive], k[positive], v[positive], out[positive]
    for (row_a, row_b), members in THREE_KEYS.segments().items():
        rows = [row_a] + [row for row, _ in members] + [row_b]
        two_key = InterpolationSettings((0.0, *[t for _, t in members], 1.0), mode=mode, sigma_start=10.0,
                                        sigma_end=1.0, fusion=fusion)
        alone = host_attention(qp[rows], kp[rows], vp[rows],
                               call_options(JointAttentionOverride(two_key), positive=(True,)))
        assert torch.allclose(got[rows], alone, atol=1e-5), (row_a, row_b)
    assert torch.allclose(out[:frames], plain(q[:frames], k[:frames], v[:frames]), atol=1e-5), "negative chunk"
    assert not torch.allclose(got[6], plain(qp[6:7], kp[6:7], vp[6:7])[0], atol=1e-3), "closing frame interpolated"
