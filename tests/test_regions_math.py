"""Spatial control on the patch's own tensors: the convex mix, masks per layer, token splits, and the patch itself."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aid_pack.attention.patch import comfy_attention
from aid_pack.attention.region_patch import REGION_RUN, RegionPatch, RegionRunError, RegionRunState
from aid_pack.attention.regions import (LayerMasks, LayerShapeError, RegionTokens, layer_grid, mix_coefficients,
                                        pool_masks, region_mix)
from aid_pack.samplers.region_layout import Region, RegionLayout

HEADS, DIM = 2, 8


def test_layer_grid_follows_the_unets_rounded_up_halvings():
    assert layer_grid(8, 8, 64) == (8, 8)
    assert layer_grid(8, 8, 16) == (4, 4)
    assert layer_grid(96 // 8, 72 // 8, 6 * 5) == (6, 5)  # 12 x 9 -> 6 x 5 (ceil)
    assert layer_grid(12, 9, 3 * 3) == (3, 3)
    with pytest.raises(LayerShapeError):
        layer_grid(8, 8, 20)


def test_box_coverage_pools_exactly():
    region = Region("cat", box=(0.25, 0.0, 0.5, 1.0))
    latent = region.latent_mask(4, 8)
    assert latent[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    pooled = pool_masks(latent.unsqueeze(0), (2, 4))
    assert pooled.reshape(2, 4)[0].tolist() == [0.0, 1.0, 1.0, 0.0]
    half_cell = Region("cat", box=(0.0, 0.0, 0.3, 1.0)).latent_mask(1, 5)
    assert half_cell[0].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])


def test_region_tokens_split_one_repetition_of_the_joined_context():
    layout = RegionTokens(3, (2, 1))
    keys = torch.arange(12.0).reshape(1, 12, 1)  # the 6-token context repeated twice (LCM with another prompt)
    parts = layout.split(keys)
    assert [p.flatten().tolist() for p in parts] == [[0, 1, 2], [3, 4], [5]]
    with pytest.raises(ValueError):
        layout.split(torch.zeros(1, 7, 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=4),
       st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_mix_coefficients_are_convex_per_pixel(weights, mask_values):
    masks = torch.tensor(mask_values).reshape(1, 4).repeat(len(weights), 1)
    coefficients = mix_coefficients(torch.tensor([weights]), masks)
    assert (coefficients >= 0).all()
    assert (coefficients.sum(dim=1) <= 1 + 1e-6).all()
    clipped = torch.tensor(weights).clamp(0, 1)
    if float((clipped.unsqueeze(1) * masks).sum(0).max()) <= 1:
        assert torch.allclose(coefficients[0], clipped.unsqueeze(1) * masks)


def test_region_mix_is_exact_at_zero_and_one():
    g, local = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    zero = torch.zeros(1, 1, 4)
    assert torch.equal(region_mix(g, [local], zero), g)
    one = torch.ones(1, 1, 4)
    assert torch.equal(region_mix(g, [local], one), local)


def _extra_options(uuids, latent_hw=(4, 4), sigma=1.0, state=None):
    options = {"n_heads": HEADS, "dim_head": DIM, "attn_precision": None, "uuids": uuids,
               "cond_or_uncond": list(range(len(uuids))), "original_shape": [1, 4, *latent_hw],
               "sigmas": torch.tensor([sigma])}
    if state is not None:
        options[REGION_RUN] = state
    return options


def _state(layout, weight, uuid="pos", tokens=RegionTokens(5, (3,)), steps=2):
    weights = torch.full((steps, 1, len(layout)), float(weight))
    return RegionRunState({uuid: tokens}, LayerMasks(layout.rasterise), weights, (2.0, 1.0, 0.0))


@pytest.fixture(scope="module")
def tensors():
    generator = torch.Generator().manual_seed(0)
    rows, q_tokens, channels = 2, 16, HEADS * DIM  # chunk 0: negative (1 row), chunk 1: positive with regions
    q = torch.randn(rows, q_tokens, channels, generator=generator)
    k = torch.randn(rows, 8, channels, generator=generator)  # positive: 5 prompt tokens + 3 local; negative: 8 own
    v = torch.randn(rows, 8, channels, generator=generator)
    return q, k, v


LEFT_HALF = RegionLayout((Region("cat", box=(0.0, 0.0, 0.5, 1.0)),))


def _left_columns(tokens=16, width=4):
    return torch.tensor([index % width < width // 2 for index in range(tokens)])


def test_a_left_half_region_leaves_the_right_half_unchanged(tensors):
    q, k, v = tensors
    options = _extra_options(["neg", "pos"], state=_state(LEFT_HALF, 1.0))
    out = RegionPatch()(q, k, v, options)
    attention = comfy_attention(options)
    global_out = attention(q[1:], k[1:, :5], v[1:, :5])
    local_out = attention(q[1:], k[1:, 5:], v[1:, 5:])
    left = _left_columns()
    assert torch.allclose(out[1, ~left], global_out[0, ~left], atol=1e-6), "outside the region: the full prompt"
    assert torch.allclose(out[1, left], local_out[0, left], atol=1e-6), "inside, weight 1: the local prompt"
    assert torch.allclose(out[0], attention(q[:1], k[:1], v[:1])[0], atol=1e-6), "the negative chunk is plain"


def test_weight_zero_is_the_full_prompt_and_the_step_picks_the_weight(tensors):
    q, k, v = tensors
    layout = LEFT_HALF
    state = RegionRunState({"pos": RegionTokens(5, (3,))}, LayerMasks(layout.rasterise),
                           torch.tensor([[[0.0]], [[1.0]]]), (2.0, 1.0, 0.0))
    attention = comfy_attention(_extra_options(["neg", "pos"]))
    global_out = attention(q[1:], k[1:, :5], v[1:, :5])
    first = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], sigma=2.0, state=state))
    assert torch.equal(first[1], global_out[0])
    second = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], sigma=1.0, state=state))
    assert not torch.allclose(second[1], global_out[0])
    between = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], sigma=1.5, state=state))  # heun's midpoints
    assert torch.equal(between[1], global_out[0])


class _PlainAttentionPatch:
    """Another pack's replace patch that computes plain attention and adds a constant term (as IP-Adapter adds one)."""

    def __init__(self, term=0.0):
        self.term = term
        self.calls = []

    def __call__(self, q, k, v, extra_options):
        self.calls.append(k.shape[1])
        return comfy_attention(extra_options)(q, k, v) + self.term


def test_chained_patch_sees_each_key_set_and_gives_the_same_mix(tensors):
    q, k, v = tensors
    options = _extra_options(["neg", "pos"], state=_state(LEFT_HALF, 0.7))
    direct = RegionPatch()(q, k, v, options)
    inner = _PlainAttentionPatch()
    chained = RegionPatch(previous=inner)(q, k, v, options)
    assert torch.allclose(direct, chained, atol=1e-5)
    assert inner.calls == [40, 24]  # per call, every row's key set repeated to a common length (lcm(5, 8), lcm(3, 8))
    with_term = RegionPatch(previous=_PlainAttentionPatch(term=0.25))(q, k, v, options)
    assert torch.allclose(with_term, direct + 0.25, atol=1e-5), "a term added inside the chained patch counts once"


def test_added_terms_follow_their_sigma_range(tensors):
    q, k, v = tensors
    patch = RegionPatch()
    patch.add(lambda out, q, k, v, extra_options, **kwargs: torch.ones_like(out), sigma_start=1.5, sigma_end=0.5)
    options = _extra_options(["neg", "pos"], sigma=1.0, state=_state(LEFT_HALF, 0.5))
    base = RegionPatch()(q, k, v, options)
    assert torch.allclose(patch(q, k, v, options), base + 1)
    late = _extra_options(["neg", "pos"], sigma=2.0, state=_state(LEFT_HALF, 0.5))
    assert torch.allclose(patch(q, k, v, late), RegionPatch()(q, k, v, late))


def test_without_a_run_state_the_patch_says_how_to_sample(tensors):
    q, k, v = tensors
    with pytest.raises(RegionRunError, match="sampling run"):
        RegionPatch()(q, k, v, _extra_options(["neg", "pos"]))


def test_a_plain_chunk_attends_to_one_repetition_of_its_repeated_context(tensors):
    q, k, v = tensors
    own_k, own_v = k[:1, :4], v[:1, :4]
    k, v = k.clone(), v.clone()
    k[:1], v[:1] = own_k.repeat(1, 2, 1), own_v.repeat(1, 2, 1)  # the negative's 4 tokens tiled to the joined 8
    state = _state(LEFT_HALF, 0.5)
    state.token_counts = {"neg": 4, "pos": 5}
    out = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], state=state))
    attention = comfy_attention(_extra_options(["neg", "pos"]))
    assert torch.allclose(out[0], attention(q[:1], own_k, own_v)[0], atol=1e-6)
    assert torch.allclose(out[0], attention(q[:1], k[:1], v[:1])[0], atol=1e-5)


_box = st.tuples(st.floats(0.0, 0.75), st.floats(0.0, 0.75), st.floats(0.25, 1.0), st.floats(0.25, 1.0)).map(
    lambda b: (b[0], b[1], min(b[2], 1.0 - b[0]), min(b[3], 1.0 - b[1])))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(_box, _box, st.floats(0.0, 1.0), st.booleans())
def test_a_region_at_weight_zero_changes_nothing(kept_box, idle_box, kept_weight, chained):
    """Adding a region whose weight is 0 at every step, anywhere, overlapping or not, leaves every output as it was."""
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(1, 16, HEADS * DIM, generator=generator)
    k, v = (torch.randn(1, 10, HEADS * DIM, generator=generator) for _ in range(2))  # 5 prompt + 3 kept + 2 idle
    kept, idle = Region("kept", box=kept_box), Region("idle", box=idle_box)
    one = RegionRunState({"pos": RegionTokens(5, (3,))}, LayerMasks(RegionLayout((kept,)).rasterise),
                         torch.full((2, 1, 1), kept_weight), (2.0, 1.0, 0.0))
    two = RegionRunState({"pos": RegionTokens(5, (3, 2))}, LayerMasks(RegionLayout((kept, idle)).rasterise),
                         torch.tensor([[[kept_weight, 0.0]]] * 2), (2.0, 1.0, 0.0))
    patch = RegionPatch(previous=_PlainAttentionPatch() if chained else None)
    without = patch(q, k[:, :8], v[:, :8], _extra_options(["pos"], state=one))
    with_idle = patch(q, k, v, _extra_options(["pos"], state=two))
    assert torch.allclose(with_idle, without, atol=1e-6)
