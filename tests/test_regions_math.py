"""Spatial control on the patch's own tensors: the convex mix, masks per layer, token splits, and the patch itself."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aid_pack.attention.patch import comfy_attention
from aid_pack.attention.region_patch import REGION_RUN, RegionMixError, RegionPatch, RegionRunError, RegionRunState
from aid_pack.attention.regions import (LayerMasks, LayerShapeError, RegionTokens, layer_grid, mix_coefficients,
                                        pool_masks, region_mix)
from aid_pack.samplers.region_layout import Region, RegionLayout
from aid_pack.samplers.region_weights import RowWeights

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


def constant(weights):
    """weights(sigma) of a run: the same [1, N] weights at every sigma."""
    table = torch.tensor([weights], dtype=torch.float32)
    return lambda sigma: table


def _state(layout, weight, uuid="pos", tokens=RegionTokens(5, (3,)), mix="convex", negative=("neg",)):
    return RegionRunState({uuid: tokens}, LayerMasks(layout.rasterise, layout.layer_masks),
                          constant([float(weight)] * len(layout)), mix, frozenset(negative))


def linear_percent(sigma):
    """A stand-in schedule for patch tests: sigma 2 is the start (percent 0), sigma 0 the end."""
    return 1.0 - sigma / 2.0


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
    steps = RowWeights(torch.tensor([[[0.0]], [[1.0]]])).lookup(layout.names, linear_percent, (2.0, 1.0, 0.0))
    state = RegionRunState({"pos": RegionTokens(5, (3,))}, LayerMasks(layout.rasterise), steps)
    attention = comfy_attention(_extra_options(["neg", "pos"]))
    global_out = attention(q[1:], k[1:, :5], v[1:, :5])
    first = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], sigma=2.0, state=state))
    assert torch.equal(first[1], global_out[0])
    second = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], sigma=1.0, state=state))
    assert torch.equal(second, RegionPatch()(q, k, v, _extra_options(["neg", "pos"], state=_state(layout, 1.0))))
    # a second-order sampler's midpoint (or s_churn's raised sigma) between two steps: weights interpolated by
    # schedule percent, here halfway between 0 and 1
    between = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], sigma=1.5, state=state))
    assert torch.allclose(between, RegionPatch()(q, k, v, _extra_options(["neg", "pos"], state=_state(layout, 0.5))),
                          atol=1e-6)


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
                         constant([kept_weight]))
    two = RegionRunState({"pos": RegionTokens(5, (3, 2))}, LayerMasks(RegionLayout((kept, idle)).rasterise),
                         constant([kept_weight, 0.0]))
    patch = RegionPatch(previous=_PlainAttentionPatch() if chained else None)
    without = patch(q, k[:, :8], v[:, :8], _extra_options(["pos"], state=one))
    with_idle = patch(q, k, v, _extra_options(["pos"], state=two))
    assert torch.allclose(with_idle, without, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# the official mix (the paper's code): out = g_c + sum_i w_i M_i (l_i - g_u)
# ---------------------------------------------------------------------------------------------------------------

FULL_CANVAS = RegionLayout((Region("dog", box=(0.0, 0.0, 1.0, 1.0)),))


def softmax_attention(q, k, v, heads=HEADS):
    """Attention written out here, independent of the pack and of ComfyUI: [rows, Lq, C] x [rows, Lk, C]."""
    def split(x):
        return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2).double()

    qh, kh, vh = split(q), split(k), split(v)
    scores = qh @ kh.transpose(-1, -2) / qh.shape[-1] ** 0.5
    out = scores.softmax(dim=-1) @ vh
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


@pytest.mark.parametrize("weight", [0.3, 1.0, 2.5])
def test_official_mix_of_one_full_canvas_region_is_g_plus_w_times_l_minus_g_u(tensors, weight):
    q, k, v = tensors  # row 0: the negative prompt's (8 own tokens), row 1: the positive's (5 prompt + 3 local)
    options = _extra_options(["neg", "pos"], state=_state(FULL_CANVAS, weight, mix="official"))
    out = RegionPatch()(q, k, v, options).double()
    g_c = softmax_attention(q[1:], k[1:, :5], v[1:, :5])
    l = softmax_attention(q[1:], k[1:, 5:], v[1:, 5:])
    g_u = softmax_attention(q[:1], k[:1], v[:1])
    assert torch.allclose(out[1:], g_c + weight * (l - g_u), atol=1e-5)
    assert torch.allclose(out[:1], g_u, atol=1e-5), "the negative prompt's rows stay plain"


def test_official_mix_at_weight_zero_is_the_full_prompt_bit_for_bit(tensors):
    q, k, v = tensors
    out = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], state=_state(LEFT_HALF, 0.0, mix="official")))
    plain = comfy_attention(_extra_options(["neg", "pos"]))
    assert torch.equal(out[1], plain(q[1:], k[1:, :5], v[1:, :5])[0])


def test_official_mix_takes_g_u_from_the_negative_entry_wherever_it_sits(tensors):
    """The negative prompt's chunk is found by its uuid: putting it after the positive one changes nothing."""
    q, k, v = tensors
    state = _state(FULL_CANVAS, 1.5, mix="official")
    first = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], state=state))
    swapped = RegionPatch()(q.flip(0), k.flip(0), v.flip(0), _extra_options(["pos", "neg"], state=state))
    assert torch.allclose(first, swapped.flip(0), atol=1e-6)


def test_official_mix_through_a_chained_patch_is_the_same_mix(tensors):
    q, k, v = tensors
    options = _extra_options(["neg", "pos"], state=_state(LEFT_HALF, 2.0, mix="official"))
    direct = RegionPatch()(q, k, v, options)
    assert torch.allclose(RegionPatch(previous=_PlainAttentionPatch())(q, k, v, options), direct, atol=1e-5)


def test_official_mix_without_the_negative_rows_in_the_call_says_so(tensors):
    """cfg 1, a guider without a negative, or a call ComfyUI split for memory: no g_u, a named error."""
    q, k, v = tensors
    state = _state(LEFT_HALF, 1.0, mix="official")
    with pytest.raises(RegionMixError, match="Apply Spatial-Temporal Attention: input 'mix'.*negative prompt's rows"):
        RegionPatch()(q[1:], k[1:], v[1:], _extra_options(["pos"], state=state))
    convex = _state(LEFT_HALF, 1.0)
    assert RegionPatch()(q[1:], k[1:], v[1:], _extra_options(["pos"], state=convex)).shape == q[1:].shape


def test_official_coefficients_are_not_clipped(tensors):
    q, k, v = tensors
    once = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], state=_state(FULL_CANVAS, 1.0, mix="official")))
    twice = RegionPatch()(q, k, v, _extra_options(["neg", "pos"], state=_state(FULL_CANVAS, 2.0, mix="official")))
    g_c = comfy_attention(_extra_options(["neg", "pos"]))(q[1:], k[1:, :5], v[1:, :5])
    assert torch.allclose(twice[1:] - g_c, 2 * (once[1:] - g_c), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# the paper code's disc regions
# ---------------------------------------------------------------------------------------------------------------

def paper_disc(centre_x, centre_y, dim):
    """The paper's code (attention.py, mode fix_radius_0p2) restated: cells whose corner lies within 0.2."""
    axis = torch.arange(dim, dtype=torch.float32) / dim
    distance = (axis - centre_x).pow(2).unsqueeze(0) + (axis - centre_y).pow(2).unsqueeze(1)
    return (distance < 0.04).float()


@pytest.mark.parametrize("dim", [8, 16, 32, 64])
def test_a_disc_region_is_the_paper_codes_disc_at_every_layer_grid(dim):
    region = Region("cat", box=(0.1, 0.3, 0.3, 0.2), shape="disc")  # centre (0.25, 0.4)
    masks = LayerMasks(RegionLayout((region,)).rasterise, RegionLayout((region,)).layer_masks)
    options = {"original_shape": [1, 4, 64, 64]}
    got = masks.for_layer(options, dim * dim, "cpu", torch.float32).reshape(dim, dim)
    assert torch.equal(got, paper_disc(0.25, 0.4, dim))


def test_a_disc_crops_the_square_around_its_centre_and_is_round_on_wide_images():
    region = Region("cat", box=(0.7, 0.0, 0.3, 0.2), shape="disc")  # centre (0.85, 0.1), near the top-right corner
    assert region.pixel_box(512, 512) == (int(512 * 0.65), 0, 512, int(512 * 0.3))
    wide = region.disc_mask(64, 128)
    rows, columns = torch.nonzero(wide, as_tuple=True)
    assert int(columns.max() - columns.min()) + 1 <= 2 * 0.2 * 64 + 1, "radius in pixels of the shorter side"
    inside = Region("cat", box=(0.4, 0.4, 0.2, 0.2), shape="disc")
    assert inside.area() == pytest.approx(3.14159 * 0.2 ** 2, rel=0.02)
    assert region.area() < inside.area(), "the image edges clip a disc near the corner"
