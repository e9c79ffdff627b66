"""Temporal weights: schedules, and the two optimisers on the real host (tiny SD1.5, tiny random CLIP, 64 px).

What is tested of the optimisers are their properties, not image quality: the gradient method lowers the
objective within its iterations, the search never returns a setting worse than its start, and what both
return is reproducible by Apply Spatial-Temporal Attention + KSampler with the returned weights.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.best_frame import AIDCLIPScorerLoader
from aid_pack.nodes.region_sampler import (FIXED, ApplySpatialTemporalAttention, SpatialTemporalSampler,
                                           SpatialTemporalWeightOptimiser)
from aid_pack.nodes.region_weights import SpatialTemporalWeights
from aid_pack.nodes.regions import SpatialTemporalRegion
from aid_pack.samplers.region_optimiser import perturbed
from aid_pack.samplers.region_weights import (RegionWeights, RowWeights, WeightCurve, WeightsError, parse_curve,
                                              parse_knots)

SIZE, STEPS, CFG, SEED = 64, 2, 5.0, 21
PROMPT = "a photo of a cat to the left of a dog"


def test_curves_run_over_the_schedule_percent():
    percents = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert WeightCurve.ramp(1.0, 0.0).values(percents).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert WeightCurve.constant(0.3).values([0.0, 0.5, 1.0]).tolist() == [0.3, 0.3, 0.3]
    assert parse_curve("0:0, 0.5:1, 1:0").values(percents).tolist() == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert parse_curve("0.5:0.2").values([0.0, 0.5, 1.0]).tolist() == pytest.approx([0.2, 0.2, 0.2])


def test_knots_text_has_a_default_and_named_curves():
    default, named = parse_knots("# every region\n0:0.8, 1:0.2\ndog = 0:1, 1:0.5\n")
    weights = RegionWeights(default, named)
    table = weights.values_at([0.0, 0.5, 1.0], ("cat", "dog"))
    assert table[:, 0].tolist() == pytest.approx([0.8, 0.5, 0.2])
    assert table[:, 1].tolist() == pytest.approx([1.0, 0.75, 0.5])
    assert parse_knots("0:2.5")[0].knots == ((0.0, 2.5),), "the official mix takes weights above 1"
    for bad in ("0:0.5, 0.5", "0.5:0.2, 0.4:0.3", "0:11", "1.5:0.2", "0:1\n0:0.5", "= 0:1"):
        with pytest.raises(WeightsError):
            parse_knots(bad)


def test_an_optimised_table_follows_the_percents_of_its_steps_and_is_checked_against_the_regions():
    table = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    weights = RegionWeights.from_table(table, ("cat", "dog"), (0.0, 0.4, 0.8))
    assert torch.equal(weights.values_at([0.0, 0.4, 0.8], ("cat", "dog")), table), "its own steps: bit for bit"
    assert weights.values_at([0.2, 0.6, 0.9, 1.0], ("cat", "dog"))[:, 0].tolist() == pytest.approx([0.5, 0.5, 0, 0])
    with pytest.raises(WeightsError, match="optimised for 2 regions"):
        weights.values_at([0.0], ("cat",))
    with pytest.raises(WeightsError):
        RowWeights(torch.zeros(3, 1, 2)).lookup(("cat", "dog"), lambda sigma: 1 - sigma, (1.0, 0.75, 0.5, 0.25, 0.0))
    assert RegionWeights.from_table(table * 3, ("cat", "dog"), (0.0, 0.4, 0.8), clip=False).largest(()) == 3.0


def test_the_official_start_is_five_over_n_for_every_object():
    start = RegionWeights.official_start()
    assert start.values_at([0.0, 1.0], ("cat", "dog")).tolist() == [[2.5, 2.5], [2.5, 2.5]]
    assert start.values_at([0.3], ("a", "b", "c", "d")).tolist() == [[1.25] * 4]
    assert start.largest(("cat", "dog")) == 2.5


def test_a_run_looks_weights_up_by_the_schedule_percent_of_each_sigma():
    """The same sigma gets the same weights whatever part of the schedule the run holds."""
    curve = RegionWeights(parse_curve("0:0, 0.5:1, 1:0"))
    to_percent = lambda sigma: 1.0 - sigma / 10.0  # noqa: E731  a stand-in for the model's schedule
    full = curve.lookup(("cat",), to_percent, (10.0, 7.5, 5.0, 2.5, 0.0))
    second_half = curve.lookup(("cat",), to_percent, (5.0, 2.5, 0.0))
    assert [float(full(s)) for s in (10.0, 7.5, 5.0, 2.5)] == [0.0, 0.5, 1.0, 0.5]
    assert [float(second_half(s)) for s in (5.0, 2.5)] == [1.0, 0.5]


def test_search_perturbations_stay_in_range_and_follow_the_seed():
    table = torch.full((6, 2), 0.5)
    first = perturbed(table, 0.8, torch.Generator().manual_seed(1))
    assert ((first >= 0) & (first <= 1)).all() and not torch.equal(first, table)
    assert torch.equal(first, perturbed(table, 0.8, torch.Generator().manual_seed(1)))
    official = perturbed(torch.full((6, 2), 2.5), 2.0, torch.Generator().manual_seed(1), upper=None)
    assert (official >= 0).all() and (official > 1).any(), "the official mix's weights are not capped at 1"


def test_the_weights_node_shows_its_curves_and_checks_names(sd15_tiny, encode):
    built = SpatialTemporalWeights().build("knots", 0.5, 0, 0, "0:1, 1:0\ncat = 0:0.2")
    assert built["ui"]["images"] and "cat: 0:0.2" in built["ui"]["text"][0]
    regions = SpatialTemporalRegion().add("dog", "fractions", 0, 0, 0.5, 1,
                                          local_prompt=encode(sd15_tiny[1], "a dog"))["result"][0]
    with pytest.raises(AIDInputError, match="no region is described as cat"):
        SpatialTemporalWeights().build("knots", 0.5, 0, 0, "cat = 0:0.2", regions=regions)


@pytest.fixture(scope="module")
def setup(sd15_tiny, encode, clip_scorer_name):
    clip = sd15_tiny[1]
    cat = SpatialTemporalRegion().add("cat", "fractions", 0.0, 0.1, 0.5, 0.8,
                                      local_prompt=encode(clip, "a photo of a cat"))["result"][0]
    regions = SpatialTemporalRegion().add("dog", "fractions", 0.5, 0.1, 0.5, 0.8,
                                          local_prompt=encode(clip, "a photo of a dog"), regions=cat)["result"][0]
    return {"model": sd15_tiny[0], "vae": sd15_tiny[2], "regions": regions, "positive": encode(clip, PROMPT),
            "negative": encode(clip, "blurry"), "scorer": AIDCLIPScorerLoader().load(clip_scorer_name)[0],
            "latent": {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}}


def optimise(setup, method, iterations, learning_rate=0.005, candidates=2, sampler="euler"):
    return SpatialTemporalSampler().sample(
        setup["model"], setup["positive"], setup["negative"], setup["regions"], setup["latent"], SEED, STEPS, CFG,
        sampler, "normal", method, iterations, learning_rate, candidates, vae=setup["vae"], scorer=setup["scorer"],
        prompt_text=PROMPT)


def ksample_with(comfy, setup, weights):
    patched = ApplySpatialTemporalAttention().apply(setup["model"], setup["regions"], weights)[0]
    return comfy["nodes"].common_ksampler(patched, SEED, STEPS, CFG, "euler", "normal", setup["positive"],
                                          setup["negative"], setup["latent"])[0]["samples"]


def objectives(report: str) -> tuple[float, float]:
    line = next(line for line in report.splitlines() if line.startswith("objective before"))
    parts = line.split()
    return float(parts[2]), float(parts[4])


def test_search_never_returns_a_worse_setting_than_its_start_and_its_image_is_reproducible(comfy, setup):
    out = optimise(setup, "search", iterations=2, candidates=2)
    latent, weights, report = out["result"]
    before, after = objectives(report)
    assert after <= before
    assert "round 1:" in report and "round 2:" in report and out["ui"]["images"]
    assert weights.table.shape == (STEPS, 2)
    assert close(latent["samples"], ksample_with(comfy, setup, weights)), "a batch row is the one-image run"


@pytest.mark.slow
def test_the_gradient_optimiser_lowers_the_objective_within_its_iterations(comfy, setup):
    weights, report = SpatialTemporalWeightOptimiser().optimise(
        setup["model"], setup["positive"], setup["negative"], setup["regions"], setup["latent"], SEED, STEPS, CFG,
        "euler", "normal", setup["vae"], setup["scorer"], PROMPT, "gradient", 1, 0.05, 2)["result"]
    rounds = [line for line in report.splitlines() if line.startswith(("round", "final weights"))]
    first, final = (float(line.split(":")[1].split()[0]) for line in rounds)
    assert final < first, report
    assert not torch.allclose(weights.table, torch.full_like(weights.table, 0.5)), "Adam moved the weights"


def test_the_gradient_optimiser_leaves_the_model_sampling_what_it_sampled_before(comfy, setup):
    """The optimiser swaps the loaded weights' inference tensors for normal copies (samplers/autograd.py):
    the same values, so the input model's plain image and its weights stay exactly what they were."""
    def plain():
        return comfy["nodes"].common_ksampler(setup["model"], SEED, STEPS, CFG, "euler", "normal", setup["positive"],
                                              setup["negative"], setup["latent"])[0]["samples"]

    unet = setup["model"].model.diffusion_model
    before, weights_before = plain(), {name: value.clone() for name, value in unet.state_dict().items()}
    report = SpatialTemporalWeightOptimiser().optimise(
        setup["model"], setup["positive"], setup["negative"], setup["regions"], setup["latent"], SEED, STEPS, CFG,
        "euler", "normal", setup["vae"], setup["scorer"], PROMPT, "gradient", 1, 0.05, 2)["result"][1]
    moved = float(next(line for line in report.splitlines() if line.startswith("largest change")).split(": ")[-1])
    assert 0.0 < moved <= 0.05 * 1.001, "one Adam step moves each weight by about the learning rate at most"
    after = unet.state_dict()
    assert after.keys() == weights_before.keys()
    assert all(torch.equal(after[name], value) for name, value in weights_before.items())
    assert torch.equal(plain(), before)


def test_optimising_needs_a_scorer_and_text_and_one_image(setup):
    sampler = SpatialTemporalSampler()
    args = (setup["model"], setup["positive"], setup["negative"], setup["regions"])
    tail = (SEED, STEPS, CFG, "euler", "normal", "search", 1, 0.005, 2)
    with pytest.raises(AIDInputError, match="Spatial-Temporal Sampler: input 'scorer'"):
        sampler.sample(*args, setup["latent"], *tail, vae=setup["vae"], prompt_text=PROMPT)
    with pytest.raises(AIDInputError, match="input 'prompt_text'"):
        sampler.sample(*args, setup["latent"], *tail, vae=setup["vae"], scorer=setup["scorer"], prompt_text=" ")
    batch = {"samples": torch.zeros(2, 4, SIZE // 8, SIZE // 8)}
    with pytest.raises(AIDInputError, match="input 'latent_image'.*per image"):
        sampler.sample(*args, batch, *tail, vae=setup["vae"], scorer=setup["scorer"], prompt_text=PROMPT)


@pytest.fixture
def progress_hook():
    """Every ProgressBar update (value, total) as the server's hook would see them; the hook restored after."""
    import comfy.utils

    updates = []
    saved = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None:
                                             updates.append((value, total)))
    yield updates
    comfy.utils.set_progress_bar_global_hook(saved)


@pytest.mark.parametrize("method, iterations, total", [("search", 2, 2 * STEPS), ("gradient", 1, 2 * STEPS),
                                                       (FIXED, 1, STEPS)])
def test_the_sampler_shows_progress_over_every_step_it_samples(setup, progress_hook, method, iterations, total):
    """search: a round of candidates per `iterations`; gradient: each pass and the final sampling."""
    optimise(setup, method, iterations=iterations, candidates=2)
    assert [value for value, _ in progress_hook] == list(range(1, total + 1))
    assert {bar for _, bar in progress_hook} == {total}


@pytest.mark.parametrize("method", ["search", "gradient"])
def test_cancel_stops_the_optimiser_after_the_step_it_is_in_and_the_model_still_samples(comfy, setup, method):
    import comfy.model_management
    import comfy.utils

    calls = []

    def cancel_after_first_step(value, total, preview, node_id=None):
        calls.append(value)
        comfy.model_management.interrupt_current_processing(True)

    saved = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(cancel_after_first_step)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            optimise(setup, method, iterations=3, candidates=2)
    finally:
        comfy.utils.set_progress_bar_global_hook(saved)
    assert calls == [1], "nothing ran after the step in which the user cancelled"
    assert not comfy.model_management.processing_interrupted()
    latent = optimise(setup, FIXED, iterations=1)["result"][0]["samples"]  # the host goes on as before
    assert torch.isfinite(latent).all()
