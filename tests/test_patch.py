"""The replace patch: which rows it interpolates, when, at which keys, and how it coexists with others."""
import copy

import pytest
import torch

from aid_pack.attention.branches import POSITIVE_UUIDS, UnknownBranchError
from aid_pack.attention.install import existing_replace_patch, install_interpolation, transformer_block_keys
from aid_pack.attention.patch import FrameCountError, InterpolationPatch, InterpolationSettings

HEADS, DIM = 2, 8

def fused_outer(q, k, v, k_a, v_a, k_b, v_b, t, attention):
    """(1 - t) Attn(Q, [K; K_A]) + t Attn(Q, [K; K_B]) on [rows, L, C] (algorithm.md section 3), row by row."""
    rows = []
    for r in range(q.shape[0]):
        def term(k_e, v_e):
            return attention(q[r:r + 1], torch.cat([k[r:r + 1], k_e], 1), torch.cat([v[r:r + 1], v_e], 1))
        rows.append((1 - float(t[r])) * term(k_a, v_a) + float(t[r]) * term(k_b, v_b))
    return torch.cat(rows)

COEFFICIENTS = (0.0, 0.3, 0.7, 1.0)


def sdpa(q, k, v):
    """Plain multi-head attention on [rows, L, heads*d]."""
    split = lambda x: x.reshape(x.shape[0], x.shape[1], HEADS, DIM).transpose(1, 2)  # noqa: E731
    if k.shape[0] != q.shape[0]:
        k, v = k.expand(q.shape[0], -1, -1), v.expand(q.shape[0], -1, -1)
    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], HEADS * DIM)


def options(cond_or_uncond, sigma=5.0):
    """extra_options of a call whose chunks are positive where cond_or_uncond is 0 (as the branch marker says)."""
    uuids = [f"entry-{c}" for c in range(len(cond_or_uncond))]
    return {"n_heads": HEADS, "dim_head": DIM, "attn_precision": None, "cond_or_uncond": cond_or_uncond,
            "sigmas": torch.tensor([sigma] * len(COEFFICIENTS)), "uuids": uuids,
            POSITIVE_UUIDS: frozenset(u for u, kind in zip(uuids, cond_or_uncond) if kind == 0)}


def qkv(chunks, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = chunks * len(COEFFICIENTS)
    return [torch.randn(rows, 6, HEADS * DIM, generator=g) for _ in range(3)]


@pytest.mark.parametrize("cond_or_uncond", [[1, 0], [0, 1], [0], [1, 0, 0]])
def test_only_interior_rows_of_positive_chunks_are_interpolated(comfy, cond_or_uncond):
    q, k, v = qkv(len(cond_or_uncond))
    out = InterpolationPatch(InterpolationSettings(COEFFICIENTS))(q, k, v, options(cond_or_uncond))
    frames = len(COEFFICIENTS)
    t = torch.tensor(COEFFICIENTS[1:-1])
    for chunk, kind in enumerate(cond_or_uncond):
        rows = slice(chunk * frames, (chunk + 1) * frames)
        cq, ck, cv, got = q[rows], k[rows], v[rows], out[rows]
        plain = sdpa(cq, ck, cv)
        if kind == 1:
            assert torch.allclose(got, plain, atol=1e-5), "negative chunk must get plain attention"
            continue
        assert torch.allclose(got[[0, -1]], plain[[0, -1]], atol=1e-5), "endpoints must get plain attention"
        expected = fused_outer(cq[1:-1], ck[1:-1], cv[1:-1], ck[:1], cv[:1], ck[-1:], cv[-1:], t, sdpa)
        assert torch.allclose(got[1:-1], expected, atol=1e-5)
        assert not torch.allclose(got[1:-1], plain[1:-1], atol=1e-3)


def test_patch_is_plain_attention_outside_its_sigma_range(comfy):
    q, k, v = qkv(2)
    patch = InterpolationPatch(InterpolationSettings(COEFFICIENTS, sigma_start=10.0, sigma_end=2.0))
    for sigma, active in ((11.0, False), (10.0, True), (5.0, True), (2.0, True), (1.0, False)):
        out = patch(q, k, v, options([1, 0], sigma))
        assert torch.allclose(out, sdpa(q, k, v), atol=1e-5) != active, sigma
    off = InterpolationPatch(InterpolationSettings(COEFFICIENTS, active=False))
    assert torch.allclose(off(q, k, v, options([1, 0])), sdpa(q, k, v), atol=1e-5)


def test_wrong_frame_count_names_the_node_and_fix(comfy):
    q, k, v = qkv(2)
    patch = InterpolationPatch(InterpolationSettings((0.0, 0.5, 1.0), node_name="Apply AID"))
    with pytest.raises(FrameCountError, match=r"Apply AID: input 'schedule': the sampled latent batch has 4 frames "
                                              r"but the schedule has 3\. Fix: make the latent with AID Latent"):
        patch(q, k, v, options([1, 0]))


def foreign_patch(q, k, v, extra_options):
    """Stands in for another pack's replace patch (e.g. IP-Adapter): plain attention plus a term of its own."""
    return sdpa(q, k, v) + 0.25 * q


def test_chained_patch_keeps_the_foreign_term_and_interpolates(comfy):
    q, k, v = qkv(2)
    chained = InterpolationPatch(InterpolationSettings(COEFFICIENTS), previous=foreign_patch)
    out = chained(q, k, v, options([1, 0]))
    alone = InterpolationPatch(InterpolationSettings(COEFFICIENTS))(q, k, v, options([1, 0]))
    assert torch.allclose(out, alone + 0.25 * q, atol=1e-5)
    inactive = InterpolationPatch(InterpolationSettings(COEFFICIENTS, active=False), previous=foreign_patch)
    assert torch.allclose(inactive(q, k, v, options([1, 0])), foreign_patch(q, k, v, {}), atol=1e-5)


@pytest.mark.parametrize("mode", ["fused inner", "outer", "inner"])
def test_chained_patch_matches_unchained_for_every_mode(comfy, mode):
    q, k, v = qkv(2, seed=3)
    settings = InterpolationSettings(COEFFICIENTS, mode=mode)
    plain_previous = lambda q_, k_, v_, eo: sdpa(q_, k_, v_)  # noqa: E731
    chained = InterpolationPatch(settings, previous=plain_previous)(q, k, v, options([1, 0]))
    assert torch.allclose(chained, InterpolationPatch(settings)(q, k, v, options([1, 0])), atol=1e-5)


def meta_unet(config):
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    base = dict(image_size=32, in_channels=4, out_channels=4, use_spatial_transformer=True, legacy=False,
                use_checkpoint=False, use_temporal_attention=False, use_temporal_resblock=False)
    return UNetModel(**base, **config, device="meta", operations=comfy.ops.disable_weight_init)


SD15 = dict(model_channels=320, num_res_blocks=[2, 2, 2, 2], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
            channel_mult=[1, 2, 4, 4], transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=768,
            num_heads=8, transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            adm_in_channels=None)
SDXL = dict(model_channels=320, num_res_blocks=[2, 2, 2], transformer_depth=[0, 0, 2, 2, 10, 10],
            channel_mult=[1, 2, 4], transformer_depth_middle=10, use_linear_in_transformer=True, context_dim=2048,
            num_head_channels=64, transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10],
            adm_in_channels=2816, num_classes="sequential")
VEGA = dict(SDXL, transformer_depth=[0, 0, 1, 1, 2, 2], transformer_depth_middle=-1,
            transformer_depth_output=[0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_keys_are_enumerated_from_the_unet(comfy):
    sd15 = transformer_block_keys(meta_unet(SD15))
    assert sd15 == ([("input", n, 0) for n in (1, 2, 4, 5, 7, 8)] + [("middle", 0, 0)]
                    + [("output", n, 0) for n in range(3, 12)])
    sdxl = transformer_block_keys(meta_unet(SDXL))
    assert len(sdxl) == 70 and ("middle", 0, 9) in sdxl and ("output", 0, 9) in sdxl and ("input", 4, 1) in sdxl
    vega = transformer_block_keys(meta_unet(VEGA))
    assert len(vega) == 15 and not any(key[0] == "middle" for key in vega)


def test_every_installed_key_fires_during_sampling(comfy, sd15_tiny):
    import comfy.sample

    model = sd15_tiny[0].clone()
    from aid_pack.samplers.sequence.branches import install_positive_branch_marker

    install_interpolation(model, InterpolationSettings((0.0, 0.5, 1.0)))
    install_positive_branch_marker(model, "test")
    fired = set()
    replace = model.model_options["transformer_options"]["patches_replace"]
    for name, patches in replace.items():
        for key, patch in list(patches.items()):
            def spy(q, k, v, eo, patch=patch, name=name):
                fired.add((name, eo["block"][0], eo["block"][1], eo["block_index"]))
                return patch(q, k, v, eo)
            patches[key] = spy
    layers = {(name, *key) for name in ("attn1", "attn2") for key in transformer_block_keys(model.model.diffusion_model)}
    latent = torch.zeros(3, 4, 8, 8)
    positive = [[torch.randn(3, 77, 768), {}]]
    comfy.sample.sample(model, torch.randn_like(latent), 1, 5.0, "euler", "normal", positive,
                        [[torch.randn(1, 77, 768), {}]], latent, disable_pbar=True)
    assert fired == layers
    # SD1.x blocks hold one layer each: the patches sit on the 2-tuple keys IPAdapter_plus and PAG use
    assert all(len(key) == 2 for patches in replace.values() for key in patches)


def test_foreign_patch_is_chained_and_own_patch_replaced(comfy, sd15_tiny):
    model = sd15_tiny[0].clone()
    model.set_model_attn2_replace(foreign_patch, "input", 1)  # a 2-tuple key, as IPAdapter_plus uses on SD1.5
    install_interpolation(model, InterpolationSettings((0.0, 0.5, 1.0)))
    patch = existing_replace_patch(model.model_options, "attn2", ("input", 1, 0))
    assert isinstance(patch, InterpolationPatch) and patch.previous is foreign_patch
    install_interpolation(model, InterpolationSettings((0.0, 0.25, 0.5, 1.0)))
    again = existing_replace_patch(model.model_options, "attn2", ("input", 1, 0))
    assert again.previous is foreign_patch and again.settings.coefficients == (0.0, 0.25, 0.5, 1.0)
    middle = existing_replace_patch(model.model_options, "attn2", ("middle", 0, 0))
    assert isinstance(middle, InterpolationPatch) and middle.previous is None


def test_narrower_layers_remove_earlier_aid_patches(comfy, sd15_tiny):
    model = sd15_tiny[0].clone()
    install_interpolation(model, InterpolationSettings((0.0, 0.5, 1.0)), "self and cross")
    install_interpolation(model, InterpolationSettings((0.0, 0.5, 1.0)), "cross only")
    assert existing_replace_patch(model.model_options, "attn1", ("input", 1, 0)) is None
    assert isinstance(existing_replace_patch(model.model_options, "attn2", ("input", 1, 0)), InterpolationPatch)


def test_patch_survives_model_clone_and_device_moves(comfy, sd15_tiny):
    model = sd15_tiny[0].clone()
    install_interpolation(model, InterpolationSettings((0.0, 0.5, 1.0)))
    patch = existing_replace_patch(model.model_options, "attn1", ("input", 1, 0))
    clone = model.clone()
    copied = existing_replace_patch(clone.model_options, "attn1", ("input", 1, 0))
    assert isinstance(copied, InterpolationPatch) and copied.settings is patch.settings
    assert patch.to(torch.device("cpu")) is patch and patch.to(torch.float16) is patch


def test_positive_chunks_come_from_the_marked_uuids_not_the_list_index(comfy):
    """DualCFGGuider-like call: cond_or_uncond [0, 1, 2] where only the entry of index 2 is positive."""
    q, k, v = qkv(3)
    extra = options([0, 1, 2])
    extra[POSITIVE_UUIDS] = frozenset({extra["uuids"][2]})
    out = InterpolationPatch(InterpolationSettings(COEFFICIENTS))(q, k, v, extra)
    frames = len(COEFFICIENTS)
    plain = sdpa(q, k, v)
    assert torch.allclose(out[:2 * frames], plain[:2 * frames], atol=1e-5), "index 0 and 1 are not positive here"
    assert not torch.allclose(out[2 * frames + 1:3 * frames - 1], plain[2 * frames + 1:3 * frames - 1], atol=1e-3)


def test_a_call_without_the_branch_marker_is_refused(comfy):
    q, k, v = qkv(2)
    extra = options([1, 0])
    del extra[POSITIVE_UUIDS]
    with pytest.raises(UnknownBranchError, match=r"Apply AID: the model was called outside a ComfyUI sampling run"):
        InterpolationPatch(InterpolationSettings(COEFFICIENTS))(q, k, v, extra)


def ip_term(out, q, k, v, extra_options, scale=1.0, **kwargs):
    """An IPAdapter_plus-style added term: depends on the queries only."""
    return scale * torch.tanh(q)


def test_added_terms_follow_the_attn2replace_protocol(comfy):
    q, k, v = qkv(2)
    patch = InterpolationPatch(InterpolationSettings(COEFFICIENTS))
    alone = patch(q, k, v, options([1, 0]))
    patch.add(ip_term, scale=0.5, sigma_start=8.0, sigma_end=1.0)
    assert torch.allclose(patch(q, k, v, options([1, 0], sigma=5.0)), alone + 0.5 * torch.tanh(q), atol=1e-6)
    assert torch.allclose(patch(q, k, v, options([1, 0], sigma=9.0)), alone, atol=1e-6), "outside its sigma range"
    # a clone's patch gets its own list: .add() on the clone leaves the original model alone
    clone = copy.deepcopy(patch)
    clone.add(ip_term, scale=1.0, sigma_start=8.0, sigma_end=1.0)
    assert len(patch.added) == 1 and len(clone.added) == 2


def test_to_is_passed_on_to_the_chained_patch(comfy):
    class Movable:
        def __init__(self, where=None):
            self.where = where

        def to(self, target):
            return Movable(target)

        def __call__(self, q, k, v, extra_options):
            return sdpa(q, k, v)

    patch = InterpolationPatch(InterpolationSettings(COEFFICIENTS), previous=Movable())
    moved = patch.to(torch.float16)
    assert moved.previous.where == torch.float16 and patch.previous.where is None


def test_chained_patch_sees_the_plain_batch_last(comfy):
    """A previous patch that records what it sees (SAG keeps the uncond attention) records plain attention."""
    seen = []

    def recording(q, k, v, extra_options):
        seen.append(k.shape[1])
        return sdpa(q, k, v)

    q, k, v = qkv(2)
    InterpolationPatch(InterpolationSettings(COEFFICIENTS), previous=recording)(q, k, v, options([1, 0]))
    assert seen[-1] == k.shape[1] and len(seen) == 3
