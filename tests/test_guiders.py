"""Interpolated attention lands on the positive prompt's rows under every core guider and extra pass (issue 10.1).

The guiders pass their conds to calc_cond_batch in their own order (DualCFGGuider: negative, middle,
positive), and SAG / legacy PerpNeg run extra passes over other prompts, so a patch that took
cond_or_uncond 0 for "positive" would interpolate the wrong rows. Each test sets a guider up so that
the right behaviour is known exactly: either an equivalent plain-CFG run (same frames), or the set of
prompt entries whose rows the patch may change (recorded by aid_harness.branch_spy).
"""
import pytest
import torch

from aid_harness.branch_spy import changed_uuids, spy_on_interpolation
from aid_harness.compare import close
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.latent import AIDLatent
from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

SIZE, STEPS, CFG, SEED, FRAMES = 64, 3, 5.0, 7, 4


@pytest.fixture(scope="module")
def sequence(sd15_tiny, prompts, encode):
    """The pieces of a 4-frame Apply AID run: patched model, sequence prompts, latent, noise, sigmas."""
    import comfy.samplers

    schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
    model = ApplyAID().apply(sd15_tiny[0], schedule, "fused outer", "self and cross", 0.0, 0.6)[0]
    latent, noise = AIDLatent().build(SIZE, SIZE, schedule, seed=SEED)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS)
    return {"model": model, "plain_model": sd15_tiny[0], "schedule": schedule,
            "positive": AIDConditioning().build(prompts["a"], prompts["b"], schedule)[0],
            "latent": latent["samples"], "noise": noise.generate_noise(latent), "sigmas": sigmas,
            "negative": prompts["neg"], "empty": encode(sd15_tiny[1], "")}


def run(guider, sequence, sampler="euler"):
    import comfy.samplers

    return guider.sample(sequence["noise"], sequence["latent"], comfy.samplers.sampler_object(sampler),
                         sequence["sigmas"], disable_pbar=True, seed=SEED)


def cfg_run(model, positive, negative, sequence, cfg=CFG):
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return run(guider, sequence)


def assert_same_frames(got, expected):
    for f in range(FRAMES):
        assert close(got[f], expected[f]), f"frame {f}"


@pytest.fixture(scope="module")
def cfg_frames(sequence):
    """The reference: the sequence under the plain CFGGuider (positive first, where the old code looked)."""
    return cfg_run(sequence["model"], sequence["positive"], sequence["negative"], sequence)


def test_dual_cfg_interpolates_the_positive_rows(sequence, cfg_frames):
    """With the middle prompt equal to the negative, DualCFG is plain CFG on the positive prompt."""
    from comfy_extras.nodes_custom_sampler import Guider_DualCFG

    guider = Guider_DualCFG(sequence["model"])
    guider.set_conds(sequence["positive"], sequence["negative"], sequence["negative"])
    guider.set_cfg(CFG, 3.0)
    assert_same_frames(run(guider, sequence), cfg_frames)


def test_dual_cfg_leaves_the_middle_and_negative_rows_plain(sequence):
    from comfy_extras.nodes_custom_sampler import Guider_DualCFG

    model = sequence["model"].clone()
    records = spy_on_interpolation(model)
    guider = Guider_DualCFG(model)
    guider.set_conds(sequence["positive"], sequence["empty"], sequence["negative"])
    guider.set_cfg(CFG, 3.0)
    run(guider, sequence)
    assert changed_uuids(records) == {entry["uuid"] for entry in guider.original_conds["positive"]}


def test_perp_neg_guider_and_legacy_perp_neg_interpolate_only_the_positive(sequence):
    """neg_scale 0 makes both Perp-Neg forms plain CFG against the empty prompt."""
    from comfy_extras.nodes_perpneg import Guider_PerpNeg, PerpNeg

    expected = cfg_run(sequence["model"], sequence["positive"], sequence["empty"], sequence)
    guider = Guider_PerpNeg(sequence["model"])
    guider.set_conds(sequence["positive"], sequence["negative"], sequence["empty"])
    guider.set_cfg(CFG, 0.0)
    assert_same_frames(run(guider, sequence), expected)
    # the legacy node runs an extra pass over the empty prompt inside its cfg function
    legacy = PerpNeg.execute(sequence["model"], sequence["empty"], 0.0).result[0]
    assert_same_frames(cfg_run(legacy, sequence["positive"], sequence["negative"], sequence), expected)


def test_basic_guider_is_cfg_one(sequence):
    from comfy_extras.nodes_custom_sampler import Guider_Basic

    guider = Guider_Basic(sequence["model"])
    guider.set_conds(sequence["positive"])
    expected = cfg_run(sequence["model"], sequence["positive"], sequence["negative"], sequence, cfg=1.0)
    assert_same_frames(run(guider, sequence), expected)


@pytest.mark.parametrize("order", ["SAG after AID", "SAG before AID"])
def test_self_attention_guidance_pass_over_the_negative_stays_plain(sequence, order):
    """SAG re-runs the negative prompt on a blurred input; those rows must not be interpolated."""
    import comfy.samplers
    from comfy_extras.nodes_sag import SelfAttentionGuidance

    if order == "SAG after AID":
        model = SelfAttentionGuidance.execute(sequence["model"], 0.5, 2.0).result[0]
    else:
        sag = SelfAttentionGuidance.execute(sequence["plain_model"], 0.5, 2.0).result[0]
        model = ApplyAID().apply(sag, sequence["schedule"], "fused outer", "self and cross", 0.0, 0.6)[0]
    model = model.clone()
    records = spy_on_interpolation(model)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(sequence["positive"], sequence["negative"])
    guider.set_cfg(CFG)
    frames = run(guider, sequence)
    assert changed_uuids(records) == {entry["uuid"] for entry in guider.original_conds["positive"]}
    # and the endpoints are still what plain SAG makes of A and B
    plain = SelfAttentionGuidance.execute(sequence["plain_model"], 0.5, 2.0).result[0]
    one = {"noise": sequence["noise"][:1], "latent": sequence["latent"][:1], "sigmas": sequence["sigmas"]}
    for index, name in ((0, "a"), (-1, "b")):
        alone = cfg_run(plain, _endpoint_prompt(sequence, name), sequence["negative"], one)
        assert close(frames[index], alone[0]), name


def _endpoint_prompt(sequence, name):
    """The plain CONDITIONING of endpoint A or B (rows 0 and F-1 of the sequence's context)."""
    context, options = sequence["positive"][0]
    row = 0 if name == "a" else context.shape[0] - 1
    return [[context[row:row + 1], {key: value for key, value in options.items() if key != "aid_sequence"}]]


def test_perturbed_attention_guidance_keeps_the_endpoints(sequence):
    """PAG re-runs the positive prompt with perturbed middle-block attention; the endpoints stay plain PAG."""
    from comfy_extras.nodes_pag import PerturbedAttentionGuidance

    frames = cfg_run(PerturbedAttentionGuidance.execute(sequence["model"], 3.0).result[0], sequence["positive"],
                     sequence["negative"], sequence)
    plain = PerturbedAttentionGuidance.execute(sequence["plain_model"], 3.0).result[0]
    one = {"noise": sequence["noise"][:1], "latent": sequence["latent"][:1], "sigmas": sequence["sigmas"]}
    for index, name in ((0, "a"), (-1, "b")):
        assert close(frames[index], cfg_run(plain, _endpoint_prompt(sequence, name), sequence["negative"], one)[0])
    without_pag = cfg_run(sequence["model"], sequence["positive"], sequence["negative"], sequence)
    assert not close(frames[1], without_pag[1], rel=1e-3), "PAG's perturbation reaches the patched model"
