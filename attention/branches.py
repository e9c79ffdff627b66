"""Which chunks of an attention batch are the positive (conditional) branch, decided by what they are.

Inside the model one call holds one chunk of rows per conditioning entry the guider batched
together; `cond_or_uncond` gives each chunk's index in the list of conds the guider passed to
calc_cond_batch, which means "0 = positive" only for the plain CFGGuider (DualCFGGuider passes
[negative, middle, positive]; SAG, PAG and PerpNeg run extra passes). So the patches never read
meaning from that index: before sampling starts, a wrapper (samplers/sequence/branches.py) writes the
uuids of the positive entries under POSITIVE_UUIDS into transformer_options, and a chunk is
positive exactly when its entry's uuid (transformer_options["uuids"]) is one of them.
"""
from __future__ import annotations

POSITIVE_UUIDS = "aid_positive_uuids"


class UnknownBranchError(RuntimeError):
    """The model was called without the marker, so the positive rows cannot be known."""


def positive_chunks(extra_options: dict, node_name: str = "Apply AID") -> list[bool]:
    """One flag per chunk of the batch: True where the chunk holds positive-prompt rows.

    Raises UnknownBranchError when the call did not come through a sampling run that marked the
    positive entries (a sampler that bypasses ComfyUI's guiders), rather than guessing.
    """
    positive = extra_options.get(POSITIVE_UUIDS)
    uuids = extra_options.get("uuids")
    if positive is None or uuids is None:
        raise UnknownBranchError(
            f"{node_name}: the model was called outside a ComfyUI sampling run (no guider marked which rows are "
            f"the positive prompt), so interpolated attention cannot tell the positive rows from the negative "
            f"ones. Fix: sample the patched model with a core sampler node (KSampler, SamplerCustom, "
            f"SamplerCustomAdvanced with a core guider) or AID Sampler.")
    return [uuid in positive for uuid in uuids]
