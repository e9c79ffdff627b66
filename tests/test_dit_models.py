"""AID on diffusion transformers (issue 12): ComfyUI's own Flux, SD3.5 and Qwen-Image classes at tiny sizes.

Each family runs the AID properties through the pack's nodes on the real host: endpoints equal plain
KSampler generations, a batched frame equals the middle frame of its own three-frame run, chunked
equals unchunked, an inactive patch equals text-embedding interpolation, the input MODEL is
unchanged, and interpolated attention changes the interior frames. Flux runs guidance-distilled
(cfg 1, its guidance value in the CONDITIONING), SD3 and Qwen-Image with CFG. CONDITIONING is built
at each model's context width (aid_harness/dit_models.py). Frames compare with compare.close.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_harness.dit_models import CONTEXT_WIDTH, dit_conditioning, tiny_dit_model
from aid_pack.errors import AIDInputError
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning, PAIDGuidance
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, SEED = 64, 3, 7
CFG = {"flux": 1.0, "sd3": 4.0, "qwen_image": 2.5}
FAMILIES = list(CFG)


class Dit:
    """A tiny model of one family with its prompts, and the plain and AID runs the tests compare."""

    def __init__(self, comfy, family, model=None, width=CONTEXT_WIDTH, steps=STEPS):
        self.nodes = comfy["nodes"]
        self.family = family
        self.model = model if model is not None else tiny_dit_model(family)
        self.cfg = CFG[family]
        self.steps = steps
        self.a, self.b = dit_conditioning(family, 1, width=width), dit_conditioning(family, 2, width=width)
        self.negative = dit_conditioning(family, 3, width=width)

    def plain(self, positive, seed=SEED, model=None, latent=None):
        """The core KSampler on an empty latent (ComfyUI gives it the model's channels and layout)."""
        latent = latent if latent is not None else {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}
        return self.nodes.common_ksampler(model or self.model, seed, self.steps, self.cfg, "euler", "simple", positive,
                                          self.negative, latent)[0]["samples"]

    def aid(self, schedule, **overrides):
        args = dict(model=self.model, positive_a=self.a, positive_b=self.b, negative=self.negative, schedule=schedule,
                    width=SIZE, height=SIZE, seed=SEED, steps=self.steps, cfg=self.cfg, sampler_name="euler",
                    scheduler="simple", mode="fused outer", layers="self and cross", start_percent=0.0,
                    end_percent=0.6, max_frames_per_batch=0)
        args.update(overrides)
        return AIDSampler().sample(**args)[0]["samples"]


def schedule(frames=4, coefficients=None):
    return InterpolationSchedule(tuple(coefficients or linear_coefficients(frames)), "custom")


@pytest.fixture(scope="module", params=FAMILIES)
def dit(request, comfy):
    return Dit(comfy, request.param)


@pytest.fixture(scope="module")
def four_frames(dit):
    return dit.aid(schedule(4))


@pytest.fixture(scope="module")
def endpoints(dit):
    return dit.plain(dit.a), dit.plain(dit.b)


def test_endpoints_equal_plain_generations(dit, four_frames, endpoints):
    assert four_frames.shape[1] == 16
    assert close(four_frames[0], endpoints[0][0]) and close(four_frames[-1], endpoints[1][0])
    assert not close(four_frames[1], four_frames[0], rel=1e-2) and torch.isfinite(four_frames).all()


def test_frame_equals_middle_frame_of_its_three_frame_run(dit, four_frames):
    alone = dit.aid(schedule(coefficients=(0.0, 1 / 3, 1.0)))
    assert close(four_frames[1], alone[1])


def test_chunked_output_equals_unchunked(dit, four_frames):
    chunked = dit.aid(schedule(4), max_frames_per_batch=3)
    for f in range(4):
        assert close(chunked[f], four_frames[f]), f"frame {f}"


def test_inactive_patch_equals_text_embedding_interpolation_and_the_patch_changes_interiors(dit, four_frames):
    sched = schedule(4)
    off = dit.aid(sched, start_percent=0.3, end_percent=0.3)
    positive = AIDConditioning().build(dit.a, dit.b, sched)[0]
    tei = dit.plain(positive, latent=AIDLatent().build(SIZE, SIZE, sched, seed=0)[0])
    for f in range(4):
        assert close(off[f], tei[f]), f"frame {f}"
    for f in (1, 2):
        assert not close(four_frames[f], tei[f], rel=1e-2), "interpolated attention should change interior frames"


def test_core_ksampler_path_equals_aid_sampler_and_keeps_the_input_model(dit, four_frames, endpoints):
    """Apply AID + AID Conditioning + AID Latent (4-channel zeros, made the model's own by ComfyUI) + KSampler."""
    sched = schedule(4)
    patched = ApplyAID().apply(dit.model, sched, "fused outer", "self and cross", 0.0, 0.6)[0]
    positive = AIDConditioning().build(dit.a, dit.b, sched)[0]
    frames = dit.plain(positive, model=patched, latent=AIDLatent().build(SIZE, SIZE, sched, seed=0)[0])
    for f in range(4):
        assert close(frames[f], four_frames[f]), f"frame {f}"
    assert "optimized_attention_override" not in dit.model.model_options.get("transformer_options", {})
    assert "optimized_attention_override" in patched.model_options["transformer_options"]
    assert torch.equal(dit.plain(dit.a), endpoints[0])


def test_prompts_of_different_token_counts_are_refused(dit):
    """Repeated text tokens change joint attention: a DiT sequence needs prompts of one length."""
    longer = dit_conditioning(dit.family, 2, tokens=12)
    with pytest.raises(AIDInputError, match=r"AID Sampler: input 'positive_b': the prompts have different token "
                                            r"counts \(A 8, B 12 tokens\).*not invariant to repeated text tokens.*Fix:"):
        dit.aid(schedule(3), positive_b=longer)
    sched = schedule(3)
    patched = ApplyAID().apply(dit.model, sched, "fused outer", "self and cross", 0.0, 0.6)[0]
    positive = AIDConditioning().build(dit.a, longer, sched)[0]  # AID Conditioning cannot know the model
    with pytest.raises(AIDInputError, match=r"AID Conditioning: input 'positive_b': the prompts have different"):
        dit.plain(positive, model=patched, latent=AIDLatent().build(SIZE, SIZE, sched, seed=0)[0])


def test_paid_guidance_keeps_endpoints_and_sets_the_interior(dit, four_frames, endpoints):
    guidance = PAIDGuidance().build(dit_conditioning(dit.family, 4))[0]
    guided = dit.aid(schedule(4), guidance=guidance)
    assert close(guided[0], endpoints[0][0]) and close(guided[-1], endpoints[1][0])
    assert not close(guided[1], four_frames[1], rel=1e-2)
    other_length = PAIDGuidance().build(dit_conditioning(dit.family, 4, tokens=5))[0]
    with pytest.raises(AIDInputError, match="input 'guidance': the prompts have different token counts"):
        dit.aid(schedule(3), guidance=other_length)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_log_sum_exp_fusion_gives_the_concat_frames(comfy, family):
    """Flux passes [B, heads, L, d], SD3 [B, L, heads*d]: both layouts through both fusions."""
    model = Dit(comfy, family)
    concat = model.aid(schedule(3))
    lse = model.aid(schedule(3), fusion="lse")
    assert close(concat[1], lse[1], rel=1e-3) and not close(concat[1], concat[0], rel=1e-2)
