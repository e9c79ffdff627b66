"""Keyframe sequences (prompt travel) A -> B -> C -> ...: keys from text or sockets, image keys, the sampler."""
from __future__ import annotations

import logging

import torch

from ..attention.image_prompt import ImageKeys, ImagePromptMismatchError
from ..attention.install import UnsupportedModelError
from ..errors import AIDInputError
from ..samplers.sequence.conditioning import BLENDS
from ..samplers.keyframes.easing import EASING_NAMES, Easing, EasingError, parse_easing
from ..samplers.keyframes.sampling import (MAX_RUN_TOKENS, KeyframeRequest, check_conditioning, check_run_tokens,
                                          key_names,
                                          sample_keyframes)
from ..samplers.sequence.sampler import empty_sequence_latent
from ..samplers.keyframes.text import KeyframeError, parse_keyframes, parse_position
from ..samplers.keyframes.plan import Keyframe, Keyframes, plan_keyframes, resolve_timeline, share_plan
from .ipadapter import encode_images
from .progress import sampler_progress
from .shares import sequence_share
from .text_encode import MAX_PROMPT_CHARACTERS
from .validation import (check_choice, check_conditioning_for_model, check_equal_token_counts, check_frames_per_batch,
                         check_image_size)
from .widgets import fusion_input, interpolation_inputs, interpolation_options, sequence_sampler_inputs, share_input

TEXT_NODE = "AID Keyframes"
KEY_NODE = "AID Keyframe"
IMAGE_KEYS_NODE = "AID IP-Adapter Keys"
SAMPLER_NODE = "AID Keyframe Sampler"
CATEGORY = "AID/keyframes"
EXAMPLE = ("0: a red fox in the snow, winter forest | hold 3 | ease in-out\n"
           "+12: a white owl on a snowy branch\n"
           "+12: a grey wolf howling at the moon | ease beta(4, 4)\n"
           "+12: a black cat on a stone wall at night")
SYNTAX = ("One key per line, 'frame: prompt': '0: a red fox', '+12:' (12 frames after the previous key), '0.5:' or "
          "'50%:' (a fraction of total_frames), '-1:' (the last frame). Options after '|': hold N (show the key N "
          "frames), seed N (the key's own noise), ease linear / ease in / ease out / ease in-out / beta(6, 3) / a "
          "list (spacing of the frames to the next key), guide <prompt> (PAID guidance to the next key). An empty "
          "prompt repeats the previous key's; # starts a comment. FizzNodes' '\"0\": \"prompt\",' lines work too.")


def keyframe_error(node: str, input_name: str, error: KeyframeError) -> AIDInputError:
    """A KeyframeError as the node's input error (errors about the sequence length name total_frames)."""
    if error.source == "total_frames":
        return AIDInputError(node, "total_frames", error.problem, error.fix)
    return AIDInputError(node, input_name, str(error), error.fix)


def _encoder(clip):
    """encode(text) -> CONDITIONING as CLIP Text Encode makes it, each distinct text once."""
    cache = {}

    def encode(text: str):
        if text not in cache:
            cache[text] = clip.encode_from_tokens_scheduled(clip.tokenize(text))
        return cache[text]

    return encode


def _check_prompt_length(name: str, prompt: str) -> None:
    """Refuse a prompt longer than any text encoder reads, before it is tokenised."""
    if len(prompt) > MAX_PROMPT_CHARACTERS:
        raise AIDInputError(TEXT_NODE, name, f"a prompt is {len(prompt):,} characters long, over the "
                            f"{MAX_PROMPT_CHARACTERS:,} this node encodes.", "shorten it (the text encoders read a "
                            "few hundred tokens at most).")


class AIDKeyframes:
    """Keyframes from a schedule text: one line per key, encoded with the checkpoint's CLIP."""

    DESCRIPTION = ("Prompt travel keys from text, one line per key ('frame: prompt'), the way FizzNodes and "
                   "AnimateDiff-Evolved schedules are written, plus holds, per-segment easing, per-key seeds and "
                   "PAID guidance per segment. Prompts of any length are fine. Connect to AID Keyframe Sampler. "
                   + SYNTAX)
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("AID_KEYFRAMES",)
    RETURN_NAMES = ("keyframes",)
    OUTPUT_TOOLTIPS = ("The keys, for AID Keyframe Sampler (or more AID Keyframe nodes).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP: encodes every prompt (and guide)."}),
                "text": ("STRING", {"default": EXAMPLE, "multiline": True, "dynamicPrompts": False,
                                    "tooltip": SYNTAX}),
            },
            "optional": {
                "pre_text": ("STRING", {"default": "", "multiline": False,
                                        "tooltip": "Put before every key's prompt (e.g. the style shared by all)."}),
                "app_text": ("STRING", {"default": "", "multiline": False,
                                        "tooltip": "Put after every key's prompt (e.g. 'highly detailed, 4k')."}),
            },
        }

    def build(self, clip, text, pre_text="", app_text=""):
        if clip is None:
            raise AIDInputError(TEXT_NODE, "clip", "no CLIP is connected (the checkpoint has no text encoder).",
                                "connect the CLIP output of Load Checkpoint.")
        for name, value in (("pre_text", pre_text), ("app_text", app_text)):
            _check_prompt_length(name, value)
        try:
            specs = parse_keyframes(text, pre_text, app_text)
        except KeyframeError as error:
            raise keyframe_error(TEXT_NODE, "text", error) from None
        for spec in specs:  # the CLIP tokenizer would spend minutes on a pasted megabyte
            _check_prompt_length("text", spec.prompt)
            _check_prompt_length("text", spec.guide or "")
        encode = _encoder(clip)
        keys = tuple(Keyframe(encode(spec.prompt), spec.position, spec.hold, spec.seed, spec.easing,
                              encode(spec.guide) if spec.guide else None, spec.source, spec.text, spec.prompt)
                     for spec in specs)
        return (Keyframes(keys),)


def easing_from_widgets(node: str, ease: str, ease_values: str) -> Easing:
    """The easing of AID Keyframe's two widgets: a name, and beta's 'alpha, beta' or custom's list."""
    check_choice(node, "ease", ease, EASING_NAMES)
    try:
        if ease == "beta":
            return parse_easing(f"beta({ease_values or '4, 4'})")
        if ease == "custom":
            if not ease_values.strip():
                raise EasingError("custom needs its coefficients.")
            return parse_easing(f"custom({ease_values})")
        return parse_easing(ease)
    except EasingError as error:
        raise AIDInputError(node, "ease_values", str(error), "beta: two numbers 'alpha, beta' such as '6, 3'; custom: "
                            "one coefficient per frame to the next key, e.g. '0.2, 0.5, 0.8'.") from None


class AIDKeyframe:
    """One key from a CONDITIONING socket, appended to the keys before it (chain as many as you like)."""

    DESCRIPTION = ("A key of a keyframe sequence from any CONDITIONING (for graphs that build prompts with nodes). "
                   "Chain AID Keyframe nodes through 'previous', in order, then connect the last one to AID "
                   "Keyframe Sampler. The ease and guidance describe the segment from this key to the next.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("AID_KEYFRAMES",)
    RETURN_NAMES = ("keyframes",)
    OUTPUT_TOOLTIPS = ("The keys so far, this one last.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning": ("CONDITIONING", {"tooltip": "The key's prompt (any token length)."}),
                "frame": ("STRING", {"default": "+8", "multiline": False,
                                     "tooltip": "Where the key sits: a frame number (0, 24), +N (N frames after "
                                                "the previous key), a fraction of total_frames (0.5 or 50%) or -1 "
                                                "(the last frame). The first key needs a frame number."}),
                "hold": ("INT", {"default": 1, "min": 1, "max": 4096,
                                 "tooltip": "Frames that show this key (copies: it is sampled once)."}),
                "ease": (list(EASING_NAMES), {"default": "linear",
                                              "tooltip": "Spacing of the frames from this key to the next: ease in "
                                                         "starts slowly, ease out arrives slowly, ease in-out both; "
                                                         "beta is AID Schedule's curve; custom lists them."}),
                "ease_values": ("STRING", {"default": "", "multiline": False,
                                           "tooltip": "beta: 'alpha, beta' (default 4, 4: frames packed in the "
                                                      "middle). custom: one coefficient (0..1) per frame between "
                                                      "this key and the next."}),
                "seed": ("INT", {"default": -1, "min": -1, "max": 0xffffffffffffffff,
                                 "tooltip": "This key's noise seed; frames between two keys start from slerp of "
                                            "their noises. -1: the sampler's seed."}),
            },
            "optional": {
                "previous": ("AID_KEYFRAMES", {"tooltip": "The keys before this one (AID Keyframe or AID "
                                                          "Keyframes)."}),
                "guidance": ("AID_GUIDANCE", {"tooltip": "PAID Guidance for the frames from this key to the next."}),
            },
        }

    def build(self, conditioning, frame, hold, ease, ease_values, seed, previous=None, guidance=None):
        if not isinstance(conditioning, list) or not conditioning:
            raise AIDInputError(KEY_NODE, "conditioning", "the conditioning is empty.", "connect a CLIP Text Encode output.")
        try:
            position = parse_position(frame)
        except ValueError as error:
            raise AIDInputError(KEY_NODE, "frame", str(error), "e.g. 0, 24, +8, 0.5 or -1.") from None
        if hold < 1:
            raise AIDInputError(KEY_NODE, "hold", f"{hold} frames would not show the key.", "use 1 or more.")
        easing = easing_from_widgets(KEY_NODE, ease, ease_values)
        before = previous if previous is not None else Keyframes(())
        if not isinstance(before, Keyframes):
            raise AIDInputError(KEY_NODE, "previous", f"got a {type(before).__name__}.",
                                "connect the output of AID Keyframe or AID Keyframes.")
        number = len(before) + 1
        key = Keyframe(conditioning, position, int(hold), None if seed < 0 else int(seed), easing,
                       guidance.conditioning if guidance is not None else None, f"key {number}",
                       f"AID Keyframe at frame {frame.strip()}")
        return (before.then(key),)


class AIDIPAdapterKeys:
    """Image prompts for the keys of a keyframe sequence: one image per key, morphing from one to the next."""

    DESCRIPTION = ("Image keys through IP-Adapter: key k is shown with image k of the batch, and the frames between "
                   "two keys morph from one image to the next (the image attention interpolated like the text "
                   "attention). Make the batch with Image Batch, one image per key in key order; the keys' text "
                   "prompts still apply.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("AID_IMAGE_KEYS",)
    RETURN_NAMES = ("image_keys",)
    OUTPUT_TOOLTIPS = ("Connect to the image_keys input of AID Keyframe Sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ipadapter": ("AID_IPADAPTER", {"tooltip": "From AID IP-Adapter Loader."}),
            "clip_vision": ("CLIP_VISION", {"tooltip": "From Load CLIP Vision: ViT-H for the SD1.5 and *_vit-h "
                                                       "adapters, ViT-bigG for ip-adapter_sdxl."}),
            "images": ("IMAGE", {"tooltip": "One image per key, in key order (Image Batch joins images)."}),
            "weight": ("FLOAT", {"default": 1.0, "min": -1.0, "max": 5.0, "step": 0.05,
                                 "tooltip": "Scale of the image attention (IP-Adapter weight)."}),
        }}

    def build(self, ipadapter, clip_vision, images, weight):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 2:
            count = images.shape[0] if isinstance(images, torch.Tensor) and images.ndim == 4 else 0
            raise AIDInputError(IMAGE_KEYS_NODE, "images", f"got {count} image(s); image keys need one per key, two "
                                "or more.", "join the key images with Image Batch.")
        try:
            states, uncond = ipadapter.image_states(lambda batch, name: encode_images(clip_vision, batch, name),
                                                    [images[i:i + 1] for i in range(images.shape[0])])
        except ImagePromptMismatchError as error:
            raise AIDInputError(IMAGE_KEYS_NODE, "clip_vision", str(error),
                                "load the CLIP vision model the IP-Adapter was trained with.") from None
        return (ImageKeys.morph(weight, ipadapter, states, uncond),)


class AIDKeyframeSampler:
    """Sample a keyframe sequence: every segment an AID interpolation between its two keys, in batched runs."""

    DESCRIPTION = ("Prompt travel through any number of keys with attention interpolation: each segment between two "
                   "keys is an AID sequence (frames keep the keys' layout and identity instead of blending "
                   "embeddings), each key is sampled once per run and equals a plain generation of its prompt and "
                   "seed, holds are copies. All segments run in as few batches as max_frames_per_batch allows. A "
                   "closed loop ends with the segment back to the first key and stops one frame short of it, so the "
                   "clip loops without a repeated frame (play it 'forward'). Output: one latent per frame, in order.")
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT", "AID_KEYFRAME_SCHEDULE", "STRING")
    RETURN_NAMES = ("latent", "schedule", "key_frames")
    OUTPUT_TOOLTIPS = ("One latent per frame of the sequence, in order (decode with VAE Decode); with a share, this "
                       "participant's frames only.",
                       "Each frame's keys and coefficient, for AID Sequence Report.",
                       "The frame of each key, e.g. '0, 12, 24, 36'.")

    @classmethod
    def INPUT_TYPES(cls):
        ksampler_style = sequence_sampler_inputs()["required"]  # the same widgets and tooltips as AID Sampler
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model: SD1.x, SD2.x, SDXL, Flux, SD3.5 or Qwen-Image; it is "
                                               "not changed, the node samples a patched copy."}),
                "keyframes": ("AID_KEYFRAMES", {"tooltip": "The keys: AID Keyframes (text) or AID Keyframe nodes."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative prompt, shared by every frame."}),
                **{name: ksampler_style[name] for name in ("width", "height")},
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                                 "tooltip": "Noise seed of every key without its own 'seed'."}),
                **{name: ksampler_style[name] for name in ("steps", "cfg", "sampler_name", "scheduler")},
                "total_frames": ("INT", {"default": 0, "min": 0, "max": 100000,
                                         "tooltip": "Frames of the sequence. 0: up to the last key (a loop: its last "
                                                    "segment as long as the one before, or the frames before the "
                                                    "first key when they are more). More: the last key is held "
                                                    "to the end (a loop: the way back gets the rest). Needed for "
                                                    "fractions (0.5, 50%) and -N frames."}),
                "loop": ("BOOLEAN", {"default": False,
                                     "tooltip": "Closed loop: the last key travels back to the first; the output "
                                                "stops one frame short of the first key, so it loops seamlessly."}),
                **interpolation_inputs(),
                "max_frames_per_batch": ("INT", {"default": 0, "min": 0, "max": 4096,
                                                 "tooltip": "0: every frame in one batch. Otherwise runs of at most "
                                                            "this many rows (>= 3), keys included, contiguous in "
                                                            "frame order: bounds peak memory for any length."}),
            },
            "optional": {
                "blend": (list(BLENDS), {"default": "lerp", "tooltip": "How interior prompts mix their two keys."}),
                **fusion_input(),
                "image_keys": ("AID_IMAGE_KEYS", {"tooltip": "Optional: one IP-Adapter image per key (AID "
                                                             "IP-Adapter Keys), for image morphing through the keys."}),
                **share_input(),
            },
        }

    def sample(self, model, keyframes, negative, width, height, seed, steps, cfg, sampler_name, scheduler,
               total_frames, loop, mode, layers, start_percent, end_percent, max_frames_per_batch, blend="lerp",
               fusion="concat", image_keys=None, share=None):
        import comfy.samplers

        check_choice(SAMPLER_NODE, "sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS)
        check_choice(SAMPLER_NODE, "scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
        check_choice(SAMPLER_NODE, "blend", blend, BLENDS)
        options = interpolation_options(SAMPLER_NODE, mode, layers, start_percent, end_percent, fusion)
        check_image_size(SAMPLER_NODE, width, height)
        check_frames_per_batch(SAMPLER_NODE, max_frames_per_batch)
        if not isinstance(keyframes, Keyframes):
            raise AIDInputError(SAMPLER_NODE, "keyframes", f"got a {type(keyframes).__name__}.",
                                "connect AID Keyframes or AID Keyframe.")
        check_conditioning_for_model(SAMPLER_NODE, "negative", negative, model)
        for key in keyframes.keys:
            check_conditioning_for_model(SAMPLER_NODE, f"keyframes ({key.source})", key.conditioning, model)
            if key.guidance is not None:
                check_conditioning_for_model(SAMPLER_NODE, f"keyframes ({key.source} guide)", key.guidance, model)
        self._check_key_token_counts(keyframes, model)
        try:
            timeline = resolve_timeline(keyframes, total_frames, bool(loop))
        except KeyframeError as error:
            raise keyframe_error(SAMPLER_NODE, "keyframes", error) from None
        plan = plan_keyframes(timeline, max_frames_per_batch)
        share = sequence_share(SAMPLER_NODE, share, plan.layout, plan.frame_rows)
        if share is not None:  # this participant samples its frames and the keys they attend to, nothing else
            plan = share_plan(plan, share, max_frames_per_batch)
        try:
            tokens = check_run_tokens(keyframes, plan)
        except ValueError as error:
            raise AIDInputError(SAMPLER_NODE, "keyframes", str(error), "give the keys prompts of the same number of "
                                f"75-token chunks (77, 154, 231 ... tokens), or shorter ones; {MAX_RUN_TOKENS} tokens "
                                "is the most a run takes.") from None
        try:
            check_conditioning(keyframes, plan, blend)
        except ValueError as error:
            raise AIDInputError(SAMPLER_NODE, "keyframes", str(error), "encode every key (and guide) with the same "
                                "checkpoint's CLIP, one prompt each.") from None
        self._check_image_keys(image_keys, keyframes, model)
        latent_shape = tuple(empty_sequence_latent(model, 1, width, height).shape[1:])  # as AID Sampler's
        request = KeyframeRequest(keyframes, plan, negative, latent_shape,
                                  seed, steps, cfg, sampler_name, scheduler, blend=blend, options=options,
                                  node_name=SAMPLER_NODE, image_keys=image_keys)
        sampled_rows = len({row for run in plan.runs for row in run.rows})
        logging.info("%s: %s%s; %d rows to sample in %d run(s) of at most %d rows; prompts repeated to %s tokens",
                     SAMPLER_NODE, timeline.describe(), f"; {share.describe()}" if share else "", sampled_rows,
                     len(plan.runs), plan.max_rows, "/".join(str(t) for t in sorted(set(tokens))))
        try:
            samples = sample_keyframes(model, request, progress=sampler_progress(model),
                                       frames=share.frames if share else None)
        except UnsupportedModelError as error:
            raise AIDInputError(SAMPLER_NODE, "model", str(error), "use an SD1.x, SD2.x or SDXL checkpoint, or a "
                                "Flux, SD3.5 or Qwen-Image model.") from None
        key_frames = ", ".join(str(p) for p in timeline.key_positions())
        return ({"samples": samples}, timeline, key_frames)

    @staticmethod
    def _check_key_token_counts(keyframes, model):
        """On a DiT every key and guide prompt has one token count; named by key, before any sampling."""
        names = key_names(keyframes)
        prompts = [(("keyframes", name), key.conditioning) for name, key in zip(names, keyframes.keys)]
        prompts += [(("keyframes", f"the guidance of {name}"), key.guidance)
                    for name, key in zip(names, keyframes.keys) if key.guidance is not None]
        check_equal_token_counts(SAMPLER_NODE, model, prompts)

    @staticmethod
    def _check_image_keys(image_keys, keyframes, model):
        if image_keys is None:
            return
        if not isinstance(image_keys, ImageKeys):
            raise AIDInputError(SAMPLER_NODE, "image_keys", f"got a {type(image_keys).__name__}.",
                                f"connect the output of {IMAGE_KEYS_NODE}.")
        if image_keys.keys != len(keyframes):
            raise AIDInputError(SAMPLER_NODE, "image_keys", f"there are {image_keys.keys} images for {len(keyframes)} "
                                "keys.", "give IP-Adapter Keys one image per key, in key order.")
        try:
            image_keys.check_model(model.model.diffusion_model)
        except ImagePromptMismatchError as error:
            raise AIDInputError(SAMPLER_NODE, "image_keys", str(error),
                                "load an IP-Adapter made for this checkpoint's family.") from None


NODE_CLASS_MAPPINGS = {"AIDKeyframes": AIDKeyframes, "AIDKeyframe": AIDKeyframe, "AIDIPAdapterKeys": AIDIPAdapterKeys,
                       "AIDKeyframeSampler": AIDKeyframeSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDKeyframes": TEXT_NODE, "AIDKeyframe": KEY_NODE, "AIDIPAdapterKeys": IMAGE_KEYS_NODE,
                              "AIDKeyframeSampler": SAMPLER_NODE}
