"""What every sampling run of an AID-patched model does before its first step (a SAMPLER_SAMPLE wrapper).

Whatever node samples the patched model (AID Sampler, KSampler, SamplerCustomAdvanced, another
pack's sampler going through ComfyUI's guiders), the run:
- stops before any work when the latent batch or the sequence CONDITIONING was made for another
  schedule than the patched model (ComfyUI would silently trim or tile the rows, so "endpoint"
  rows would carry the wrong prompt);
- on a diffusion transformer, stops when the sequence's prompts have different token counts
  (samplers/sequence/conditioning.py check_token_counts), or when a conditioning carries an attention
  mask and a step of the run interpolates;
- gives each frame its own SDXL size conditioning (samplers/sequence/frame_sizes.py) and Flux guidance
  (samplers/sequence/frame_guidance.py);
- shares the step noise of stochastic samplers across frames (samplers/sequence/step_noise.py).
"""
from __future__ import annotations

from ...errors import AIDInputError
from .conditioning import SEQUENCE_MARKER, check_token_counts
from .frame_guidance import apply_frame_guidance
from .frame_sizes import apply_frame_sizes
from .step_noise import shared_step_noise

WRAPPER_KEY = "aid.sequence_run"


def _frames(count: int) -> str:
    return f"{count} frame" + ("" if count == 1 else "s")


class SequenceRun:
    """SAMPLER_SAMPLE wrapper for a model patched for a batch laid out by `layout` (attention/layout.py)."""

    def __init__(self, layout, node_name: str, family=None, active_sigmas=None):
        self.layout = layout
        self.node_name = node_name
        self.family = family  # attention.install_dit.DitFamily, None for a UNet
        self.active_sigmas = active_sigmas  # (sigma_end, sigma_start) where attention interpolates; None: never

    def __call__(self, executor, guider, sigmas, extra_args, callback, noise, *args, **kwargs):
        self.check_batch(noise.shape[0])
        self.check_attention_masks(guider.conds, sigmas)
        for prompt_type, entries in guider.conds.items():
            for index, entry in enumerate(entries or []):
                self.check_marker(entry.get(SEQUENCE_MARKER))
                entry = apply_frame_sizes(guider.inner_model, entry, prompt_type, noise)
                entries[index] = apply_frame_guidance(entry)
        with shared_step_noise(executor.class_obj, noise, sigmas, self.layout, extra_args.get("seed")):
            return executor(guider, sigmas, extra_args, callback, noise, *args, **kwargs)

    def check_batch(self, frames: int) -> None:
        """The latent batch holds one row per frame of the schedule."""
        expected = self.layout.frames
        if frames != expected:
            raise AIDInputError(self.node_name, "schedule", f"the sampled latent batch has {_frames(frames)} but "
                                f"the schedule has {expected}.", "make the latent with AID Latent from the same "
                                "schedule (or set the schedule's frames to the batch size).")

    def check_attention_masks(self, conds: dict, sigmas) -> None:
        """On a DiT, refuse an attention mask (regional or masked conditioning) before step 1 when a step of
        this run interpolates: interpolated joint attention does not join masked key sets, and the override
        would otherwise stop the run at its first interpolated step, mid-way when start_percent > 0."""
        if self.family is None or self.active_sigmas is None or not self.layout.has_interior():
            return
        low, high = self.active_sigmas
        if not any(low <= float(sigma) <= high for sigma in sigmas[:-1]):
            return
        for prompt_type, entries in conds.items():
            for entry in entries or []:
                if (entry.get("model_conds") or {}).get("attention_mask") is not None:
                    raise AIDInputError(self.node_name, "model", f"the {prompt_type} conditioning carries an "
                                        f"attention mask (regional or masked conditioning), and interpolated joint "
                                        f"attention of {self.family.name} does not join masked key sets.",
                                        "remove the attention mask from the conditioning, or set start_percent "
                                        "equal to end_percent (plain attention).")

    def check_marker(self, marker) -> None:
        """A sequence CONDITIONING in the run was made from the same schedule as the patched model, and
        (on a DiT) from prompts of one token count."""
        if marker is None:
            return
        if marker.token_names is None:  # AID Conditioning's A, B and guidance
            problem = check_token_counts(marker.token_counts, self.family)
            if problem is not None:
                raise AIDInputError("AID Conditioning", *problem)
        else:  # the keys of this node's own run
            problem = check_token_counts(marker.token_counts, self.family,
                                         tuple(("keyframes", name) for name in marker.token_names))
            if problem is not None:
                raise AIDInputError(self.node_name, *problem)
        if marker.layout == self.layout:
            return
        made, expected = marker.layout.frames, self.layout.frames
        problem = (f"the prompts come from AID Conditioning with a {made}-frame schedule, the model from a "
                   f"{expected}-frame one." if made != expected else
                   f"the prompts come from AID Conditioning with other coefficients than the model's "
                   f"({', '.join(f'{t:.3g}' for t in marker.coefficients)} against "
                   f"{', '.join(f'{t:.3g}' for t in self.layout.coefficients)}).")
        raise AIDInputError(self.node_name, "schedule", problem,
                            "connect the same AID Schedule to AID Conditioning, AID Latent and Apply AID.")


def install_sequence_run(model, layout, node_name: str, family=None, active_sigmas=None) -> None:
    """Add a SequenceRun for `layout` to a ModelPatcher clone (of a `family` DiT, None for a UNet), replacing
    one an earlier AID patch added. `active_sigmas` (sigma_end, sigma_start): where attention interpolates."""
    import comfy.patcher_extension

    kind = comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE
    model.remove_wrappers_with_key(kind, WRAPPER_KEY)
    model.add_wrapper_with_key(kind, WRAPPER_KEY, SequenceRun(layout, node_name, family, active_sigmas))
