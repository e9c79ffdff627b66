"""Spatial-temporal attention control on the real host (tiny random SD1.5, 64 px, 2 steps).

Exactness follows from the convex form: weight 0 everywhere is the plain image of the full prompt, one
region over the whole image at weight 1 the plain image of its local prompt. Latents are compared with
aid_harness.compare.close (batching other prompts next to these changes only float rounding).
"""
import copy

import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.region_sampler import ApplySpatialTemporalAttention, SpatialTemporalSampler
from aid_pack.nodes.region_weights import SpatialTemporalWeights
from aid_pack.nodes.regions import SpatialTemporalRegion

SIZE, STEPS, CFG, SEED = 64, 2, 5.0, 11


@pytest.fixture(scope="module")
def texts(sd15_tiny, encode):
    clip = sd15_tiny[1]
    return {name: encode(clip, text) for name, text in (
        ("full", "a photo of a cat to the left of a dog"), ("cat", "a photo of a cat"), ("dog", "a photo of a dog"),
        ("neg", "blurry, low quality"))}


def weights(value):
    return SpatialTemporalWeights().build("constant", value, 0.0, 0.0, "")["result"][0]


def region(description, conditioning, box, regions=None, **extra):
    x, y, w, h = box
    return SpatialTemporalRegion().add(description, "fractions", x, y, w, h, local_prompt=conditioning,
                                       regions=regions, **extra)["result"][0]


@pytest.fixture(scope="module")
def ksample(comfy, texts):
    def run(model, positive, seed=SEED, sampler="euler", negative=None):
        latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
        return comfy["nodes"].common_ksampler(model, seed, STEPS, CFG, sampler, "normal", positive,
                                              negative or texts["neg"], latent)[0]["samples"]
    return run


@pytest.fixture(scope="module")
def plain_full(sd15_tiny, texts, ksample):
    return ksample(sd15_tiny[0], texts["full"])


@pytest.fixture(scope="module")
def two_regions(texts):
    cats = region("cat", texts["cat"], (0.0, 0.1, 0.5, 0.8))
    return region("dog", texts["dog"], (0.5, 0.1, 0.5, 0.8), regions=cats)


def test_weight_zero_everywhere_is_the_plain_image_of_the_full_prompt(sd15_tiny, texts, ksample, plain_full,
                                                                      two_regions):
    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions, weights(0.0))[0]
    assert close(ksample(patched, texts["full"]), plain_full)


def test_one_full_region_at_weight_one_is_the_plain_image_of_its_local_prompt(sd15_tiny, texts, ksample, plain_full):
    everywhere = region("dog", texts["dog"], (0.0, 0.0, 1.0, 1.0))
    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], everywhere, weights(1.0))[0]
    image = ksample(patched, texts["full"])
    assert close(image, ksample(sd15_tiny[0], texts["dog"]))
    assert not close(image, plain_full, rel=1e-2)


def test_regions_change_the_image_and_the_input_model_is_unchanged(sd15_tiny, texts, ksample, plain_full,
                                                                   two_regions):
    model = sd15_tiny[0]
    before = copy.deepcopy(model.model_options)
    patched = ApplySpatialTemporalAttention().apply(model, two_regions)[0]
    assert patched is not model and model.model_options == before
    assert not close(ksample(patched, texts["full"]), plain_full, rel=1e-2)


def test_the_one_box_sampler_with_fixed_weights_is_apply_plus_ksampler(sd15_tiny, texts, ksample, two_regions):
    ramp = SpatialTemporalWeights().build("linear ramp", 0.5, 0.9, 0.1, "")["result"][0]
    latent = {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
    out, used, report = SpatialTemporalSampler().sample(
        sd15_tiny[0], texts["full"], texts["neg"], two_regions, latent, SEED, STEPS, CFG, "euler", "normal",
        "fixed weights", 3, 0.005, 4, weights=ramp)["result"]
    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions, ramp)[0]
    assert used is ramp and report == ""
    assert close(out["samples"], ksample(patched, texts["full"]))


def test_dual_cfg_with_the_negative_as_middle_is_plain_cfg(sd15_tiny, texts, two_regions):
    """The positive rows are found by what they are: DualCFGGuider passes [negative, middle, positive]."""
    import comfy.sample
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import Guider_DualCFG

    patched = ApplySpatialTemporalAttention().apply(sd15_tiny[0], two_regions)[0]
    latent = torch.zeros(1, 4, SIZE // 8, SIZE // 8)
    noise = comfy.sample.prepare_noise(latent, SEED)
    sigmas = comfy.samplers.calculate_sigmas(patched.get_model_object("model_sampling"), "normal", STEPS)
    sampler = comfy.samplers.sampler_object("euler")
    dual = Guider_DualCFG(patched)
    dual.set_conds(texts["full"], texts["neg"], texts["neg"])
    dual.set_cfg(CFG, 3.0)
    plain = comfy.samplers.CFGGuider(patched)
    plain.set_conds(texts["full"], texts["neg"])
    plain.set_cfg(CFG)
    assert close(dual.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=SEED),
                 plain.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=SEED))


def test_bad_inputs_name_the_node_and_the_input(sd15_tiny, texts, encode):
    apply = ApplySpatialTemporalAttention()
    no_prompt = SpatialTemporalRegion().add("cat", "fractions", 0, 0, 0.5, 1)["result"][0]
    with pytest.raises(AIDInputError, match="Apply Spatial-Temporal Attention: input 'regions'.*no local prompt"):
        apply.apply(sd15_tiny[0], no_prompt)
    with pytest.raises(AIDInputError, match="Spatial-Temporal Region: input 'x'"):
        SpatialTemporalRegion().add("cat", "fractions", 1.5, 0, 0.5, 1, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'width'"):
        SpatialTemporalRegion().add("cat", "pixels", 0, 0, 0, 64, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'description'"):
        SpatialTemporalRegion().add("  ", "fractions", 0, 0, 0.5, 1, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'description'.*characters"):  # the fuzz test's 1 MB string
        SpatialTemporalRegion().add("a" * 1_000_000, "fractions", 0, 0, 0.5, 1, local_prompt=texts["cat"])
    with pytest.raises(AIDInputError, match="input 'local_prompt'.*one local prompt"):
        SpatialTemporalRegion().add("cat", "fractions", 0, 0, 0.5, 1, local_prompt=texts["cat"] + texts["dog"])
    with pytest.raises(AIDInputError, match="input 'mask'.*black"):
        SpatialTemporalRegion().add("cat", "fractions", 0, 0, 0.5, 1, mask=torch.zeros(1, 64, 64))
    sdxl_wide = [[torch.zeros(1, 77, 2048), {}]]
    wrong = region("cat", sdxl_wide, (0, 0, 0.5, 1))
    with pytest.raises(AIDInputError, match="encoded for a SDXL model"):
        apply.apply(sd15_tiny[0], wrong)
    with pytest.raises(AIDInputError, match="Spatial-Temporal Weights: input 'knots'"):
        SpatialTemporalWeights().build("knots", 0.5, 0, 0, "0:0.5, 0.2")


def test_pixel_boxes_and_masks_are_fractions_of_the_canvas(texts):
    from_pixels = SpatialTemporalRegion().add("cat", "pixels", 128, 0, 256, 512, local_prompt=texts["cat"],
                                              canvas_width=512, canvas_height=512)
    assert from_pixels["result"][0].regions[0].box == (0.25, 0.0, 0.5, 1.0)
    assert from_pixels["ui"]["images"], "the node shows the layout"
    mask = torch.zeros(1, 32, 32)
    mask[:, :, 16:] = 1
    from_mask = SpatialTemporalRegion().add("dog", "fractions", 0, 0, 0.1, 0.1, local_prompt=texts["dog"], mask=mask,
                                            regions=from_pixels["result"][0])["result"][0]
    assert from_mask.names == ("cat", "dog")
    assert from_mask.regions[1].latent_mask(2, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]
    assert from_mask.regions[1].pixel_box(64, 64) == (32, 0, 64, 64)


def test_sdxl_every_transformer_block_is_patched_and_weight_zero_is_plain():
    import comfy.sample

    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model
    from aid_pack.attention.install import transformer_block_keys

    model = tiny_sdxl_model()
    full, negative = sdxl_conditioning(1), sdxl_conditioning(3)
    regions = region("cat", [[sdxl_conditioning(2)[0][0], {}]], (0.0, 0.0, 0.5, 1.0))
    patched = ApplySpatialTemporalAttention().apply(model, regions, weights(0.0))[0]
    keys = transformer_block_keys(model.model.diffusion_model)
    assert set(patched.model_options["transformer_options"]["patches_replace"]["attn2"]) == set(keys)
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, SEED)

    def sample(m):
        return comfy.sample.sample(m, noise, STEPS, 4.0, "euler", "normal", full, negative, latent)

    plain = sample(model)
    assert close(sample(patched), plain)
    strong = ApplySpatialTemporalAttention().apply(model, regions, weights(1.0))[0]
    assert not close(sample(strong), plain, rel=1e-2)
