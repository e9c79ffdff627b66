"""AID and the real IPAdapter_plus in either order give the same frames (issue 10.3).

IPAdapter_plus (the unmodified snapshot in ../shared/peers) puts an Attn2Replace at each key, or
calls `.add(...)` on a patch it finds there. Applied after Apply AID it must find AID's patch (on
SD1.5 it uses 2-tuple keys) and AID must take part in that protocol (on SDXL it uses 3-tuple keys);
applied before, AID chains to its patch. Its image term depends only on the queries, so both orders
add the same term to AID's attention.
"""
import pytest
import torch

from aid_harness import host
from aid_harness import models as M
from aid_harness.compare import close
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.latent import AIDLatent
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, CFG, SEED = 64, 3, 5.0, 3
SCHEDULE = InterpolationSchedule(linear_coefficients(3), "linear")


@pytest.fixture(scope="module")
def ipadapter_plus(comfy):
    module = host.load_peer_pack("ComfyUI_IPAdapter_plus")
    if module is None:
        pytest.skip(f"the IPAdapter_plus snapshot is not in {host.peers_dir()}")
    import sys

    return sys.modules[module.__name__ + ".IPAdapterPlus"]


def apply_aid(model):
    return ApplyAID().apply(model, SCHEDULE, "fused outer", "self and cross", 0.0, 0.6)[0]


def sample_sequence(comfy, model, prompt_a, prompt_b, negative):
    positive = AIDConditioning().build(prompt_a, prompt_b, SCHEDULE)[0]
    latent = AIDLatent().build(SIZE, SIZE, SCHEDULE, seed=0)[0]
    return comfy["nodes"].common_ksampler(model, SEED, STEPS, CFG, "euler", "normal", positive, negative,
                                          latent)[0]["samples"]


@pytest.mark.slow
def test_ipadapter_advanced_before_or_after_apply_aid_on_sd15(comfy, link_model, ipadapter_plus):
    """The full SD1.5 architecture (IPAdapter_plus hard-codes its block ids) with random weights."""
    nodes = comfy["nodes"]
    model, clip, _ = nodes.CheckpointLoaderSimple().load_checkpoint(
        link_model("checkpoints", M.ensure_sd15_checkpoint("full")))[:3]
    clip_vision = nodes.CLIPVisionLoader().load_clip(link_model("clip_vision", M.ensure_clip_vision_vit_h()))[0]
    adapter = ipadapter_plus.ipadapter_model_loader(str(M.ensure_ipadapter("sd15")))
    image = torch.rand(1, 96, 96, 3, generator=torch.Generator().manual_seed(1))
    encode = lambda text: nodes.CLIPTextEncode().encode(clip, text)[0]  # noqa: E731
    a, b, negative = encode("a photo of a dog"), encode("a photo of a cat"), encode("blurry")

    def with_ipadapter(m):
        return ipadapter_plus.IPAdapterAdvanced().apply_ipadapter(m, adapter, weight=0.8, image=image,
                                                                  clip_vision=clip_vision)[0]

    after = sample_sequence(comfy, with_ipadapter(apply_aid(model)), a, b, negative)
    before = sample_sequence(comfy, apply_aid(with_ipadapter(model)), a, b, negative)
    for f in range(3):
        assert close(after[f], before[f]), f"frame {f}"
    without = sample_sequence(comfy, apply_aid(model), a, b, negative)
    assert not close(after[1], without[1], rel=1e-3), "IPAdapter_plus's image term is there"
    # endpoints: what IPAdapter_plus alone makes of A and B
    plain = with_ipadapter(model)
    for index, prompt in ((0, a), (-1, b)):
        alone = nodes.common_ksampler(plain, SEED, STEPS, CFG, "euler", "normal", prompt, negative,
                                      {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)})[0]["samples"]
        assert close(after[index], alone[0])


class StandInAdapter(torch.nn.Module):
    """What IPAdapter_plus's attention callback reads from its adapter: to_kvs per layer, multi-GPU clones."""

    def __init__(self, layers):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        kvs = {}
        for number, inner in enumerate(layers):
            for kind in ("k", "v"):
                linear = torch.nn.Linear(2048, inner, bias=False)
                linear.weight.data = torch.randn(inner, 2048, generator=g) / 2048 ** 0.5
                kvs[f"{2 * number + 1}_to_{kind}_ip"] = linear
        self.ip_layers = torch.nn.Module()
        self.ip_layers.to_kvs = torch.nn.ModuleDict(kvs)

    def get_multigpu_clone(self, device):
        return self


def with_ipadapter_plus_patches(ipadapter_plus, model, adapter):
    """IPAdapter_plus's own set_model_patch_replace at every attn2 layer of the tiny SDXL, 3-tuple keys as on SDXL."""
    g = torch.Generator().manual_seed(6)
    clone = model.clone()
    sampling = clone.get_model_object("model_sampling")
    kwargs = {"ipadapter": adapter, "weight": 0.7, "cond": torch.randn(1, 4, 2048, generator=g),
              "cond_alt": None, "uncond": torch.zeros(1, 4, 2048), "weight_type": "linear", "mask": None,
              "sigma_start": sampling.percent_to_sigma(0.0), "sigma_end": sampling.percent_to_sigma(1.0),
              "unfold_batch": False, "embeds_scaling": "V only"}
    for number, layer in enumerate(M.unet_cross_attention_layers(model.model.diffusion_model)):
        kwargs["module_key"] = str(number * 2 + 1)
        ipadapter_plus.set_model_patch_replace(clone, dict(kwargs), (layer["block"], layer["number"], layer["index"]))
    return clone


def test_ipadapter_plus_protocol_on_sdxl_either_order(ipadapter_plus):
    import comfy.sample

    model = M.tiny_sdxl_model()
    adapter = StandInAdapter(M.tiny_sdxl_ipadapter_layers())
    a, b, negative = M.sdxl_conditioning(1), M.sdxl_conditioning(2), M.sdxl_conditioning(3)
    positive = AIDConditioning().build(a, b, SCHEDULE)[0]
    latent = torch.zeros(3, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent[:1], SEED).repeat(3, 1, 1, 1)

    def sample(m):
        return comfy.sample.sample(m, noise, STEPS, CFG, "euler", "normal", positive, negative, latent,
                                   disable_pbar=True)

    after = sample(with_ipadapter_plus_patches(ipadapter_plus, apply_aid(model), adapter))
    before = sample(apply_aid(with_ipadapter_plus_patches(ipadapter_plus, model, adapter)))
    for f in range(3):
        assert close(after[f], before[f]), f"frame {f}"
    assert not close(after[1], sample(apply_aid(model))[1], rel=1e-3), "IPAdapter_plus's image term is there"
