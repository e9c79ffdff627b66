"""Record which chunks of each attention call an AID patch changed, to check which rows it treats as positive.

A chunk counts as changed when the patch's output on its rows differs from the same patch switched
off (plain attention through whatever it chains to). Wrapped in place on the model that is sampled.
"""
from __future__ import annotations

from dataclasses import replace


class ChangedChunks:
    """Stands in for one AID patch: calls it, and appends (uuids of the chunks, changed flags) per call."""

    def __init__(self, patch, records: list):
        self.patch = patch
        self.plain = replace(patch, settings=replace(patch.settings, active=False))
        self.records = records

    def __call__(self, q, k, v, extra_options):
        out = self.patch(q, k, v, extra_options)
        plain = self.plain(q, k, v, extra_options)
        chunks = len(extra_options["cond_or_uncond"])
        rows = q.shape[0] // chunks
        scale = max(float(plain.abs().max()), 1e-6)
        changed = [float((out[c * rows:(c + 1) * rows] - plain[c * rows:(c + 1) * rows]).abs().max()) > 1e-5 * scale
                   for c in range(chunks)]
        self.records.append((list(extra_options["uuids"]), changed))
        return out

    def __deepcopy__(self, memo):
        return self


def spy_on_interpolation(model) -> list:
    """Wrap every AID patch of `model` in place; returns the list the calls are recorded in."""
    from aid_pack.attention.patch import InterpolationPatch

    records = []
    replace_patches = model.model_options["transformer_options"]["patches_replace"]
    for patches in replace_patches.values():
        for key, patch in list(patches.items()):
            if isinstance(patch, InterpolationPatch):
                patches[key] = ChangedChunks(patch, records)
    return records


def changed_uuids(records) -> set:
    """uuids of every chunk the patches changed in some call."""
    return {uuid for uuids, changed in records for uuid, flag in zip(uuids, changed) if flag}
