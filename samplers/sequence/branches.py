"""Tell the attention patches which prompt entries of a sampling run are the positive branch.

Decided by what the entries are, never by their position in a guider's list: the rows of a
sequence CONDITIONING (AID Conditioning's output, recognised by its SequenceMarker) wherever the
guider put them; without any, the entries the guider calls "positive" (every core guider has
one: CFGGuider, BasicGuider, DualCFGGuider, PerpNegGuider). Extra passes over other entries (SAG's
blurred uncond, legacy PerpNeg's empty prompt) are therefore not positive. A guider with neither
stops the run with a clear error.

The marker is a SAMPLER_SAMPLE wrapper: it runs once per sampling run, after the guider has
given every entry its uuid, and writes the positive uuids into the run's transformer_options
(attention/branches.py reads them per call).
"""
from __future__ import annotations

from ...attention.branches import POSITIVE_UUIDS
from ...errors import AIDInputError
from .conditioning import SEQUENCE_MARKER

WRAPPER_KEY = "aid.positive_branch"


def positive_uuids(conds: dict, node_name: str) -> frozenset:
    """uuids of the positive entries among a guider's conds ({name: [cond dict, ...]})."""
    marked = {entry["uuid"] for entries in conds.values() for entry in (entries or [])
              if entry.get(SEQUENCE_MARKER) is not None}
    if marked:
        return frozenset(marked)
    if conds.get("positive"):
        return frozenset(entry["uuid"] for entry in conds["positive"])
    names = ", ".join(sorted(conds)) or "none"
    raise AIDInputError(node_name, "model", f"the sampler's guider passes prompts named {names}: none is called "
                        f"'positive' and none comes from AID Conditioning, so the positive rows cannot be told apart.",
                        "connect the sequence's prompts through AID Conditioning, or use a core guider (CFGGuider, "
                        "BasicGuider, DualCFGGuider, PerpNegGuider).")


class PositiveBranchMarker:
    """SAMPLER_SAMPLE wrapper writing the positive entries' uuids into the run's transformer_options."""

    def __init__(self, node_name: str):
        self.node_name = node_name

    def __call__(self, executor, guider, sigmas, extra_args, *args, **kwargs):
        options = extra_args["model_options"].setdefault("transformer_options", {})
        options[POSITIVE_UUIDS] = positive_uuids(guider.conds, self.node_name)
        return executor(guider, sigmas, extra_args, *args, **kwargs)


def install_positive_branch_marker(model, node_name: str) -> None:
    """Add the marker to a ModelPatcher clone unless a patch of this pack already added one."""
    import comfy.patcher_extension

    kind = comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE
    if not model.get_wrappers(kind, WRAPPER_KEY):
        model.add_wrapper_with_key(kind, WRAPPER_KEY, PositiveBranchMarker(node_name))
