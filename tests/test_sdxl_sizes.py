"""SDXL size conditioning per frame (issue 10.5): each endpoint keeps its own, interior frames interpolate it.

CLIPTextEncodeSDXL puts width, height, crops and target size into the CONDITIONING; SDXL embeds them
into `y` next to the pooled text vector. Endpoint B of a sequence must be the plain generation of
B with B's sizes, and frame f's `y` must embed the sizes lerped by t_f.
"""
import torch

from aid_harness.compare import close
from aid_harness.models import sdxl_conditioning, tiny_sdxl_model
from aid_pack.samplers.sequence.conditioning import sequence_conditioning
from aid_pack.samplers.sequence.frame_sizes import frame_sizes, resolved_sizes
from aid_pack.samplers.sequence.noise import sequence_noise
from aid_pack.samplers.sequence.sampler import SequenceRequest, sample_sequence

SIZES_A = {"width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0, "target_width": 1024, "target_height": 1024}
SIZES_B = {"width": 768, "height": 1344, "crop_w": 64, "crop_h": 32, "target_width": 896, "target_height": 1152}
COEFFICIENTS = (0.0, 0.3, 1.0)


def with_sizes(conditioning, sizes):
    return [[context, dict(options, **sizes)] for context, options in conditioning]


def recorded_y(model):
    """(clone, calls): every UNet call appends (cond_or_uncond, y)."""
    calls = []

    def wrapper(apply_model, args):
        calls.append((list(args["cond_or_uncond"]), args["c"]["y"].detach().clone()))
        return apply_model(args["input"], args["timestep"], **args["c"])

    clone = model.clone()
    clone.set_model_unet_function_wrapper(wrapper)
    return clone, calls


def test_each_endpoint_keeps_its_own_size_conditioning():
    import comfy.sample

    model = tiny_sdxl_model()
    a, b = with_sizes(sdxl_conditioning(1), SIZES_A), with_sizes(sdxl_conditioning(2), SIZES_B)
    negative = sdxl_conditioning(3)
    latent = torch.zeros(3, 4, 8, 8)
    request = SequenceRequest(positive=sequence_conditioning(a, b, COEFFICIENTS), negative=negative,
                              coefficients=COEFFICIENTS, latent=latent, noise=sequence_noise(latent, COEFFICIENTS, 5),
                              seed=5, seed_b=None, steps=3, cfg=4.0, sampler_name="euler", scheduler="normal")
    spied, calls = recorded_y(model)
    frames = sample_sequence(spied, request)
    for index, prompt in ((0, a), (-1, b)):
        plain = comfy.sample.sample(model, comfy.sample.prepare_noise(latent[:1], 5), 3, 4.0, "euler", "normal",
                                    prompt, negative, latent[:1])
        assert close(frames[index], plain[0]), index
    # the interior frame's y embeds the sizes lerped by its coefficient (and its own pooled vector)
    chunks, y = calls[0]
    positive_rows = y[chunks.index(0) * 3:chunks.index(0) * 3 + 3]
    pooled = torch.lerp(a[0][1]["pooled_output"], b[0][1]["pooled_output"], COEFFICIENTS[1])
    sizes = frame_sizes(resolved_sizes(SIZES_A, 64, 64), resolved_sizes(SIZES_B, 64, 64), COEFFICIENTS[1])
    expected = model.model.encode_adm(pooled_output=pooled, **sizes)
    assert torch.allclose(positive_rows[1], expected[0], atol=1e-5)


def test_missing_sizes_take_comfyuis_defaults():
    """A without sizes, B with them: A's frame gets what ComfyUI gives a plain prompt (latent size x 8)."""
    resolved = resolved_sizes({}, 512, 768)
    assert resolved == {"width": 512, "height": 768, "crop_w": 0, "crop_h": 0, "target_width": 512,
                        "target_height": 768, "aesthetic_score": 6.0}
    assert resolved_sizes({"width": 1024}, 512, 768)["target_width"] == 1024
    middle = frame_sizes(resolved_sizes({}, 512, 512), resolved_sizes({"width": 1024}, 512, 512), 0.5)
    assert middle["width"] == 768.0 and middle["height"] == 512.0
