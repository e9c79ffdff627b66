"""AID Sequence Share: which part of a sequence this participant samples, when several GPUs or machines split it."""
from __future__ import annotations

from ..errors import AIDInputError
from ..samplers.sequence.shares import ShareError, ShareSpec, select_share

NODE_NAME = "AID Sequence Share"
MAX_SHARES = 1024


def share_index_value(value) -> int:
    """A participant number from a widget or a linked node: ComfyUI-Distributed's Distributed Value sends a
    string unless its type is INT, so whole numbers written as text count too."""
    if isinstance(value, bool):
        value = None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise AIDInputError(NODE_NAME, "share_index", f"{value!r} is not a participant number.",
                            "connect Distributed Value (default 0 for the master, n for worker n) or type 0, 1, ...")
    return value


def sequence_share(node: str, spec: ShareSpec | None, layout, frame_rows=None):
    """The Share (samplers/sequence/shares.py) a sampler node samples for `spec`; None for the whole sequence."""
    if spec is None or spec.whole:
        return None
    try:
        return select_share(layout, spec, frame_rows)
    except ShareError as error:
        raise AIDInputError(node, "share", error.problem, error.fix) from None


class AIDSequenceShare:
    """Name this participant's share of a sequence split across several GPUs or machines."""

    DESCRIPTION = ("Splits one sequence across several GPUs or machines, for example ComfyUI-Distributed's master "
                   "and workers. Connect it to the share input of AID Sampler, AID Smooth Sampler or AID "
                   "Keyframe Sampler: each participant then samples a contiguous part of the frames (with the "
                   "endpoints or keys they attend to) and outputs only that part, the first keeping A and the last "
                   "keeping B (or the last key), so Distributed "
                   "Collector gathers the whole sequence in order and it equals a run on one GPU. Drive share_index "
                   "from Distributed Value (0 on the master, n on worker n); the split is fixed, so set share_count "
                   "to the number of participants and give every one the same models.")
    CATEGORY = "AID"
    FUNCTION = "select"
    RETURN_TYPES = ("AID_SHARE",)
    RETURN_NAMES = ("share",)
    OUTPUT_TOOLTIPS = ("This participant's share, for the share input of AID Sampler, AID Smooth Sampler or AID "
                       "Keyframe Sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "share_index": ("INT", {"default": 0, "min": 0, "max": MAX_SHARES - 1,
                                        "tooltip": "Which share this participant samples, counted from 0 (the first "
                                                   "frames, with endpoint A). With ComfyUI-Distributed connect "
                                                   "Distributed Value: default 0 (the master), worker n the value n."}),
                "share_count": ("INT", {"default": 2, "min": 1, "max": MAX_SHARES,
                                        "tooltip": "How many participants split the sequence: the master plus its "
                                                   "workers. 1: the whole sequence here."}),
            },
        }

    def select(self, share_index, share_count):
        index = share_index_value(share_index)
        try:
            return (ShareSpec(index, int(share_count)),)
        except ShareError as error:
            raise AIDInputError(NODE_NAME, error.input_name, error.problem, error.fix) from None


NODE_CLASS_MAPPINGS = {"AIDSequenceShare": AIDSequenceShare}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDSequenceShare": NODE_NAME}
