"""AID Smooth Sampler on the real host with the random tiny SD1.5 (issue 7 acceptance).

Frames are compared as latents relative to their largest magnitude with the tolerance of
test_aid_core.py: a frame made in another batch differs only by float rounding.
"""
import pytest
import torch

from aid_harness.unet_rows import counting_model
from aid_pack.errors import AIDInputError
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.nodes.smooth import AIDSmoothSampler
from aid_pack.scoring.metrics import PixelDistance, measure_sequence
from aid_pack.samplers.sequence.sampler import SequenceRequest
from aid_pack.samplers.smooth.selection import dynamic_selection, planned_rounds
from aid_pack.samplers.smooth.sampling import DiffusionFrames, unet_rows_per_step
from aid_harness.compare import REL_TOL, close
from test_aid_core import CFG, SEED, SIZE

STEPS = 3


def smooth(sd15_tiny, prompts, **overrides):
    args = dict(model=sd15_tiny[0], vae=sd15_tiny[2], positive_a=prompts["a"], positive_b=prompts["b"],
                negative=prompts["neg"], frames=4, method="dynamic selection", exploration_frames=7, max_trials=2,
                target_smoothness=1.0, frames_per_round=2, metric="pixel", width=SIZE, height=SIZE, seed=SEED,
                steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal", mode="fused outer",
                layers="self and cross", start_percent=0.0, end_percent=0.5, max_frames_per_batch=0)
    args.update(overrides)
    return AIDSmoothSampler().sample(**args)


def aid_sampler(sd15_tiny, prompts, schedule):
    return AIDSampler().sample(sd15_tiny[0], prompts["a"], prompts["b"], prompts["neg"], schedule, SIZE, SIZE, SEED,
                               STEPS, CFG, "euler", "normal", "fused outer", "self and cross", 0.0, 0.5, 0)[0]["samples"]


@pytest.fixture
def progress_events():
    import comfy.utils

    events = []
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: events.append((value, total)))
    yield events
    comfy.utils.set_progress_bar_global_hook(previous)


@pytest.mark.parametrize("method", ["dynamic selection", "auto beta"])
def test_node_runs_and_its_schedule_reproduces_its_frames_in_aid_sampler(sd15_tiny, prompts, method,
                                                                         progress_events):
    output = smooth(sd15_tiny, prompts, method=method)
    events = list(progress_events)  # one bar over all rounds, ending full
    assert [value for value, _ in events] == sorted(value for value, _ in events) and events[-1][0] == events[-1][1]
    latent, images, schedule, distances = output["result"]
    frames = latent["samples"]
    assert frames.shape == (4, 4, SIZE // 8, SIZE // 8) and images.shape == (4, SIZE, SIZE, 3)
    assert schedule.frames == 4 and schedule.curve == ("custom" if method == "dynamic selection" else "beta")
    assert distances.coefficients == schedule.coefficients and distances.metric == "pixel"
    assert list(distances.distances) == pytest.approx(list(measure_sequence(images, "pixel").distances), abs=1e-6)
    assert output["ui"]["text"][0].startswith(method)

    again = aid_sampler(sd15_tiny, prompts, schedule)
    for f in range(4):
        assert close(again[f], frames[f]), f"frame {f}"
    assert torch.allclose(sd15_tiny[2].decode(frames).cpu(), images, atol=2e-3)


def test_rounds_batch_new_frames_with_the_endpoints_and_cost_the_rows_counted(sd15_tiny, prompts):
    """The driver behind the node: UNet rows counted by a spy equal the arithmetic, endpoints stay put."""

    model, counter = counting_model(sd15_tiny[0])
    latent = torch.zeros(3, 4, SIZE // 8, SIZE // 8)  # the settings of every round; coefficients etc. are replaced
    request = SequenceRequest(positive=[], negative=prompts["neg"], coefficients=(0.0, 0.5, 1.0), latent=latent,
                              noise=latent, seed=SEED, seed_b=None, steps=STEPS, cfg=CFG, sampler_name="euler",
                              scheduler="normal")
    source = DiffusionFrames(model, sd15_tiny[2], request, prompts["a"], prompts["b"])
    result = dynamic_selection(source, PixelDistance(), 4, exploration_frames=8, frames_per_round=3)
    assert source.batch_frames == [3, 5, 4]  # [A, 0.5, B], then 3 and 2 new frames with A and B
    assert len(result.explored) == 8 and result.rounds == planned_rounds("dynamic selection", 4, 8, 3)
    assert counter.rows == STEPS * unet_rows_per_step(source.batch_frames, CFG) == STEPS * 24
    assert source.endpoint_change < REL_TOL
    assert set(source.latents) == set(result.explored)


def test_interrupt_stops_between_rounds(sd15_tiny, prompts):
    import comfy.model_management

    class InterruptingVAE:
        decoded = 0

        def decode(self, samples):
            self.decoded += 1
            comfy.model_management.interrupt_current_processing(True)
            return sd15_tiny[2].decode(samples)

    vae = InterruptingVAE()
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            smooth(sd15_tiny, prompts, vae=vae, exploration_frames=16)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert vae.decoded == 1


@pytest.mark.parametrize("overrides, message", [
    (dict(frames=8, exploration_frames=6), r"input 'exploration_frames': 6 explored frames cannot give 8 frames"),
    (dict(metric="clip-vision"), r"input 'clip_vision': the clip-vision metric needs a CLIP vision model"),
    (dict(method="auto beta", max_alpha_beta=0.5), r"input 'max_alpha_beta': 0.5 is below 1"),
    (dict(width=60), r"input 'width': 60 is not a multiple of 8"),
    (dict(image_endpoints="image.png"), r"input 'image_endpoints': got a str"),
])
def test_bad_inputs_name_the_input_and_the_fix(sd15_tiny, prompts, overrides, message):
    with pytest.raises(AIDInputError, match=f"AID Smooth Sampler: {message}.*Fix: "):
        smooth(sd15_tiny, prompts, **overrides)


def test_every_other_request_field_reaches_each_round(sd15_tiny, prompts, monkeypatch):
    """Rounds replace only coefficients, prompts, latent and noise: IP-Adapter image endpoints, chunking and the
    sampling settings of the node's request go to every sample_sequence call unchanged."""
    from aid_pack.samplers.smooth import sampling as smooth_sampling

    seen = []

    def fake_sample_sequence(model, request, progress=None):
        seen.append(request)
        return torch.zeros_like(request.latent)

    monkeypatch.setattr(smooth_sampling, "sample_sequence", fake_sample_sequence)
    latent = torch.zeros(3, 4, SIZE // 8, SIZE // 8)
    marker = object()
    request = SequenceRequest(positive=[], negative=prompts["neg"], coefficients=(0.0, 0.5, 1.0), latent=latent,
                              noise=latent, seed=SEED, seed_b=9, steps=2, cfg=1.5, sampler_name="heun",
                              scheduler="karras", max_frames_per_batch=3, image_endpoints=marker)
    source = DiffusionFrames(sd15_tiny[0], sd15_tiny[2], request, prompts["a"], prompts["b"])
    source((0.0, 0.5, 1.0))
    source((0.25, 0.75))
    assert [r.coefficients for r in seen] == [(0.0, 0.5, 1.0), (0.0, 0.25, 0.75, 1.0)]
    for sent in seen:
        assert sent.image_endpoints is marker and sent.max_frames_per_batch == 3
        assert (sent.seed, sent.seed_b, sent.steps, sent.cfg, sent.sampler_name) == (SEED, 9, 2, 1.5, "heun")
        assert sent.latent.shape[0] == sent.noise.shape[0] == sent.positive[0][0].shape[0] == len(sent.coefficients)
