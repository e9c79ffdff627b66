"""Keyframe sequences on the real host (issue 14 acceptance), tiny random SD1.5.

References are the pack's already verified pieces and the core KSampler: key frames against plain
generations of each key with its seed; each segment against AID Sampler's two-key run between its
keys with the segment's coefficients (and its PAID guidance). Frames are compared with
aid_harness.compare.close.
"""
import pytest
import torch

from aid_harness.compare import close
from aid_pack.errors import AIDInputError
from aid_pack.nodes.keyframes import AIDKeyframe, AIDKeyframes, AIDKeyframeSampler
from aid_pack.nodes.sampler import AIDSampler
from aid_pack.samplers.sequence.conditioning import Guidance
from aid_pack.samplers.keyframes.easing import Easing
from aid_pack.samplers.sequence.schedule import InterpolationSchedule

SIZE, STEPS, CFG, SEED = 64, 3, 5.0, 7
SEED_A, SEED_B = 3, 5


@pytest.fixture(scope="module")
def texts():
    """Key prompts of 77, 154 and 231 tokens (CLIP's chunks of 75 + 2)."""
    return {"a": "a photo of a dog on grass",
            "b": ", ".join(["a small brown dog running on green summer grass"] * 10),
            "c": ", ".join(["a red sports car parked in front of an old stone house"] * 14),
            "guide": "a dog driving a car", "neg": "blurry, low quality"}


@pytest.fixture(scope="module")
def conds(sd15_tiny, encode, texts):
    return {name: encode(sd15_tiny[1], text) for name, text in texts.items()}


@pytest.fixture(scope="module")
def ksample(comfy, sd15_tiny, conds):
    """Plain core KSampler of one image."""
    def run(positive, seed, sampler="euler", size=SIZE, steps=STEPS):
        latent = {"samples": torch.zeros(1, 4, size // 8, size // 8)}
        return comfy["nodes"].common_ksampler(sd15_tiny[0], seed, steps, CFG, sampler, "normal", positive,
                                              conds["neg"], latent)[0]["samples"]
    return run


def keyframe_sample(model, keyframes, negative, **overrides):
    args = dict(model=model, keyframes=keyframes, negative=negative, width=SIZE, height=SIZE, seed=SEED, steps=STEPS,
                cfg=CFG, sampler_name="euler", scheduler="normal", total_frames=0, loop=False, mode="fused outer",
                layers="self and cross", start_percent=0.0, end_percent=0.5, max_frames_per_batch=0)
    args.update(overrides)
    latent, schedule, key_frames = AIDKeyframeSampler().sample(**args)
    return latent["samples"], schedule, key_frames


def two_key_run(sd15_tiny, conds, a, b, coefficients, seed, seed_b, guidance=None, **overrides):
    """AID Sampler from key a to key b with a segment's coefficients (keys at both ends)."""
    schedule = InterpolationSchedule((0.0, *coefficients, 1.0), "custom")
    args = dict(model=sd15_tiny[0], positive_a=conds[a], positive_b=conds[b], negative=conds["neg"], schedule=schedule,
                width=SIZE, height=SIZE, seed=seed, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="normal",
                mode="fused outer", layers="self and cross", start_percent=0.0, end_percent=0.5,
                max_frames_per_batch=0, seed_b=seed_b,
                guidance=Guidance(conds[guidance]) if guidance else None)
    args.update(overrides)
    return AIDSampler().sample(**args)[0]["samples"]


THREE_KEYS = ("0: {a} | seed {seed_a} | hold 2 | ease in-out\n"
              "+3: {b} | seed {seed_b} | guide {guide}\n"
              "+3: {c}")


@pytest.fixture(scope="module")
def three_keys(sd15_tiny, conds, texts):
    """A -> B -> C with holds, easing, per-key seeds, PAID guidance on B -> C and prompts of 77/154/231 tokens."""
    text = THREE_KEYS.format(seed_a=SEED_A, seed_b=SEED_B, **texts)
    keyframes = AIDKeyframes().build(sd15_tiny[1], text)[0]
    frames, schedule, key_frames = keyframe_sample(sd15_tiny[0], keyframes, conds["neg"])
    return keyframes, frames, schedule, key_frames


def test_frames_at_key_positions_equal_plain_generations_with_their_seeds(three_keys, conds, ksample):
    _, frames, schedule, key_frames = three_keys
    assert key_frames == "0, 4, 7" and frames.shape == (8, 4, SIZE // 8, SIZE // 8)
    for name, frame, seed in (("a", 0, SEED_A), ("b", 4, SEED_B), ("c", 7, SEED)):
        assert close(frames[frame], ksample(conds[name], seed)[0]), name
    assert torch.equal(frames[1], frames[0]), "a hold repeats its key's frame"
    assert schedule.key_indices() == (0, 0, None, None, 1, None, None, 2)


def test_prompts_of_77_154_and_231_tokens_mix_in_one_sequence(three_keys, conds):
    keyframes, frames, _, _ = three_keys
    assert [key.conditioning[0][0].shape[1] for key in keyframes.keys] == [77, 154, 231]
    assert torch.isfinite(frames).all()
    for f in (2, 3, 5, 6):  # interior frames are new pictures, not copies of a key
        assert not close(frames[f], frames[0], rel=1e-2) and not close(frames[f], frames[-1], rel=1e-2)


def test_each_segment_equals_the_two_key_run_between_its_keys(three_keys, sd15_tiny, conds):
    """A -> B (eased) and B -> C (PAID guided) of one three-key run are AID Sampler's runs from key to key."""
    _, frames, schedule, _ = three_keys
    first, second = schedule.segments
    assert first.coefficients == Easing("ease in-out").coefficients(2) and first.frames == (2, 3)
    a_to_b = two_key_run(sd15_tiny, conds, "a", "b", first.coefficients, SEED_A, SEED_B)
    for position, frame in enumerate((0, 2, 3, 4)):
        assert close(frames[frame], a_to_b[position]), f"A -> B frame {frame}"
    b_to_c = two_key_run(sd15_tiny, conds, "b", "c", second.coefficients, SEED_B, SEED, guidance="guide")
    for position, frame in enumerate((4, 5, 6, 7)):
        assert close(frames[frame], b_to_c[position]), f"B -> C frame {frame}"
    unguided = two_key_run(sd15_tiny, conds, "b", "c", second.coefficients, SEED_B, SEED)
    assert not close(frames[5], unguided[1], rel=1e-2), "the guidance changes the B -> C frames"


def test_closed_loop_returns_to_the_first_key_without_a_repeated_frame(sd15_tiny, conds, texts):
    from aid_pack.video import frame_order

    keys = AIDKeyframes().build(sd15_tiny[1], f"0: {texts['a']} | seed {SEED_A}\n+2: {texts['guide']}\n"
                                             f"+2: {texts['c']}")[0]
    frames, schedule, _ = keyframe_sample(sd15_tiny[0], keys, conds["neg"], loop=True, total_frames=7)
    closing = schedule.segments[-1]
    assert (closing.key_a, closing.key_b, closing.frames) == (2, 0, (5, 6)) and frames.shape[0] == 7
    way_back = two_key_run(sd15_tiny, conds, "c", "a", closing.coefficients, SEED, SEED_A)
    assert close(frames[5], way_back[1]) and close(frames[6], way_back[2])
    assert close(frames[0], way_back[-1]), "the last segment ends at the first key, which is frame 0"
    order = frame_order(frames.shape[0], "forward")
    seam = (order[-1], order[0])
    assert seam == (6, 0) and not close(frames[seam[0]], frames[seam[1]], rel=1e-2), "no repeated frame at the seam"


def test_socket_keys_equal_text_keys(sd15_tiny, conds, texts):
    """AID Keyframe nodes chained from CONDITIONING sockets describe the same sequence as the text."""
    from aid_pack.samplers.keyframes.plan import resolve_timeline

    text = AIDKeyframes().build(sd15_tiny[1], f"0: {texts['a']} | seed {SEED_A}\n+2: {texts['b']} | ease in")[0]
    first = AIDKeyframe().build(conds["a"], "0", 1, "linear", "", SEED_A)[0]
    chained = AIDKeyframe().build(conds["b"], "+2", 1, "ease in", "", -1, previous=first)[0]
    assert [k.source for k in chained.keys] == ["key 1", "key 2"] and len(first) == 1
    for from_text, from_socket in zip(text.keys, chained.keys):
        assert torch.equal(from_text.conditioning[0][0], from_socket.conditioning[0][0])
        assert (from_text.position, from_text.hold, from_text.seed, from_text.easing or Easing()) == \
            (from_socket.position, from_socket.hold, from_socket.seed, from_socket.easing)
    assert resolve_timeline(text) == resolve_timeline(chained)


@pytest.mark.slow
def test_chunked_equals_unchunked_for_40_frames_with_4_keys(sd15_tiny, conds, texts):
    """Bounded runs give the frames of one big run; no UNet call sees more rows than the budget allows."""
    from aid_harness.unet_rows import counting_model

    text = (f"0: {texts['a']} | hold 2\n+12: {texts['b']} | ease in-out | seed 11\n+12: {texts['guide']} | hold 3\n"
            f"+10: {texts['c']}")
    keys = AIDKeyframes().build(sd15_tiny[1], text)[0]
    model, counter = counting_model(sd15_tiny[0])
    small = dict(width=32, height=32, steps=2, loop=True, total_frames=40)
    whole, schedule, _ = keyframe_sample(model, keys, conds["neg"], **small)
    # one run of 37 rows (holds are copies); cond and uncond go in one call or two (prompt lengths 462 and 77)
    assert whole.shape[0] == 40 and max(counter.calls) in (37, 2 * 37)
    counter.calls.clear()
    chunked, _, _ = keyframe_sample(model, keys, conds["neg"], max_frames_per_batch=8, **small)
    assert max(counter.calls) <= 2 * 8
    for frame in range(40):
        assert close(chunked[frame], whole[frame]), f"frame {frame}"


def test_socket_keys_with_a_stochastic_sampler_keep_plain_generations(sd15_tiny, conds, ksample):
    """Chained AID Keyframe nodes through the sampler; per-key seeds drive euler_ancestral's step noise too."""
    first = AIDKeyframe().build(conds["a"], "0", 1, "linear", "", SEED_A)[0]
    keys = AIDKeyframe().build(conds["guide"], "+2", 1, "linear", "", -1, previous=first)[0]
    frames, _, _ = keyframe_sample(sd15_tiny[0], keys, conds["neg"], sampler_name="euler_ancestral")
    assert close(frames[0], ksample(conds["a"], SEED_A, "euler_ancestral")[0])
    assert close(frames[2], ksample(conds["guide"], SEED, "euler_ancestral")[0])


def test_progress_covers_every_run_once(sd15_tiny, conds, texts):
    import comfy.utils

    updates = []
    saved = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    try:
        keys = AIDKeyframes().build(sd15_tiny[1], f"0: {texts['a']}\n+3: {texts['guide']}")[0]
        keyframe_sample(sd15_tiny[0], keys, conds["neg"], max_frames_per_batch=3, steps=2)
    finally:
        comfy.utils.set_progress_bar_global_hook(saved)
    assert [value for value, _ in updates] == list(range(1, 2 * 2 + 1)) and {t for _, t in updates} == {4}


@pytest.mark.parametrize("text,overrides,input_name,message", [
    ("0: a\n4 b", {}, "text", r"line 2 \('4 b'\): expected 'frame: prompt'"),
    ("0: a\n4: b\n2: c", {}, "keyframes", r"line 3 \('2: c'\): frame 2 is not after the key before it"),
    ("0: a\n12: b", {"total_frames": 5}, "total_frames", r"the sequence has 5 frames but its keys reach frame 12"),
    ("0: a\n50%: b", {}, "keyframes", r"line 2 \('50%: b'\): '0.5' is counted from the sequence's length"),
    ("0: a\n2: b", {"max_frames_per_batch": 2}, "max_frames_per_batch", r"leaves no room"),
])
def test_bad_schedules_are_refused_naming_the_input_and_line(sd15_tiny, conds, text, overrides, input_name, message):
    with pytest.raises(AIDInputError, match=message) as error:
        keys = AIDKeyframes().build(sd15_tiny[1], text)[0]
        keyframe_sample(sd15_tiny[0], keys, conds["neg"], **overrides)
    assert error.value.input_name == input_name and "Fix:" in str(error.value)


def test_keys_from_another_model_family_are_refused(sd15_tiny, conds):
    from aid_harness.models import sdxl_conditioning

    first = AIDKeyframe().build(conds["a"], "0", 1, "linear", "", -1)[0]
    keys = AIDKeyframe().build(sdxl_conditioning(0), "+2", 1, "linear", "", -1, previous=first)[0]
    with pytest.raises(AIDInputError, match=r"input 'keyframes \(key 2\)': the prompt was encoded for a SDXL model"):
        keyframe_sample(sd15_tiny[0], keys, conds["neg"])


@pytest.mark.parametrize("frame,ease,values,input_name", [
    ("owl", "linear", "", "frame"), ("0", "beta", "6", "ease_values"), ("0", "custom", "", "ease_values"),
    ("0", "wobbly", "", "ease")])
def test_socket_key_input_errors(conds, frame, ease, values, input_name):
    with pytest.raises(AIDInputError) as error:
        AIDKeyframe().build(conds["a"], frame, 1, ease, values, -1)
    assert error.value.input_name == input_name and error.value.node == "AID Keyframe"


def test_sdxl_keys_with_long_prompts_keep_their_plain_generations():
    """SDXL-family: pooled outputs per key, prompts of 77 and 154 tokens."""
    import comfy.sample

    from aid_harness.models import sdxl_conditioning, tiny_sdxl_model
    from aid_pack.samplers.keyframes.sampling import KeyframeRequest, sample_keyframes
    from aid_pack.samplers.keyframes.text import Position
    from aid_pack.samplers.keyframes.plan import Keyframe, Keyframes, plan_keyframes, resolve_timeline

    model = tiny_sdxl_model()
    a, b, negative = sdxl_conditioning(1), sdxl_conditioning(2, tokens=154), sdxl_conditioning(3)
    keys = Keyframes((Keyframe(a, Position("frame", 0)), Keyframe(b, Position("after", 2), seed=9)))
    plan = plan_keyframes(resolve_timeline(keys))
    request = KeyframeRequest(keys, plan, negative, (4, 8, 8), 5, 3, 4.0, "euler", "normal")
    frames = sample_keyframes(model, request)
    for index, prompt, seed in ((0, a, 5), (2, b, 9)):
        latent = torch.zeros(1, 4, 8, 8)
        plain = comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), 3, 4.0, "euler", "normal",
                                    prompt, negative, latent)
        assert close(frames[index], plain[0]), index


def test_the_keyframe_sockets_are_guarded_by_type(three_keys):
    """The input guard knows the keyframe types; AID Sequence Report's schedule takes either schedule."""
    from aid_pack.nodes.input_guard import check_socket
    from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

    keyframes, _, timeline, _ = three_keys
    report_schedule = "AID_SCHEDULE,AID_KEYFRAME_SCHEDULE"
    check_socket("AID Sequence Report", "schedule", report_schedule, timeline)
    check_socket("AID Sequence Report", "schedule", report_schedule, InterpolationSchedule(linear_coefficients(3), "linear"))
    with pytest.raises(AIDInputError, match=r"input 'schedule': got a .* not an AID schedule or a keyframe schedule"):
        check_socket("AID Sequence Report", "schedule", report_schedule, keyframes)
    check_socket("AID Keyframe Sampler", "keyframes", "AID_KEYFRAMES", keyframes)
    with pytest.raises(AIDInputError, match=r"input 'keyframes': got a int .* Fix: connect AID Keyframes or AID Keyframe"):
        check_socket("AID Keyframe Sampler", "keyframes", "AID_KEYFRAMES", 5)


def test_prompt_lengths_whose_common_multiple_is_huge_are_refused_before_sampling(sd15_tiny, conds):
    """539, 616 and 693 tokens in one run would be repeated to 38808 tokens: a named error, no allocation."""
    def long(k):
        context, options = conds["a"][0]
        return [[context.repeat(1, k, 1), dict(options)]]

    keys = AIDKeyframe().build(long(7), "0", 1, "linear", "", -1)[0]
    keys = AIDKeyframe().build(long(8), "+2", 1, "linear", "", -1, previous=keys)[0]
    keys = AIDKeyframe().build(long(9), "+2", 1, "linear", "", -1, previous=keys)[0]
    with pytest.raises(AIDInputError, match=r"input 'keyframes': prompts of key 1 539, key 2 616, key 3 693 tokens "
                                            r"run together .* 38808 tokens \(at most 4620\)\. Fix: "):
        keyframe_sample(sd15_tiny[0], keys, conds["neg"])
    two = AIDKeyframe().build(long(9), "+2", 1, "linear", "", -1,
                              previous=AIDKeyframe().build(long(7), "0", 1, "linear", "", -1)[0])[0]
    with pytest.raises(AIDInputError, match=r"4851 tokens"):  # two keys (539 and 693 tokens) pass it too
        keyframe_sample(sd15_tiny[0], two, conds["neg"])


class UnusedClip:
    """A CLIP socket value that fails the test if anything is encoded with it."""

    def tokenize(self, *args, **kwargs):
        raise AssertionError("the prompt should have been refused before encoding")

    encode_from_tokens = tokenize


@pytest.mark.parametrize("name", ["text", "pre_text", "app_text"])
def test_megabyte_prompts_are_refused_before_encoding(name):
    """The server fuzz test's 1 MB app_text (some 250,000 tokens on every key) kept the host encoding for 30 min."""
    inputs = {"text": "0: a dog\n+4: a cat", "pre_text": "", "app_text": ""}
    inputs[name] = "0: " + "x" * (1 << 20) if name == "text" else "x" * (1 << 20)
    with pytest.raises(AIDInputError, match=rf"AID Keyframes: input '{name}': a prompt is 1,048,5\d\d characters "
                                            r"long.*Fix: shorten it"):
        AIDKeyframes().build(UnusedClip(), **inputs)
