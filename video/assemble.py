"""Turn an interpolation sequence into the frame order of a clip: reverse, loop mode and endpoint holds.

Frames are ComfyUI IMAGE tensors [N, H, W, C] (float, 0..1). The order is computed as a list of
source indices first, so encoders can stream frames without copying the batch.
"""
from __future__ import annotations

import torch

LOOP_MODES = ("forward", "ping-pong", "ping-pong (no repeated ends)")
ODD_SIZE_MODES = ("pad", "crop")


def frame_order(count: int, loop: str = "forward", hold_first: int = 0, hold_last: int = 0,
                reverse: bool = False) -> list[int]:
    """Source frame index of every clip frame.

    The pass is 0..count-1 (count-1..0 when `reverse`); `hold_first` extra copies of its first
    frame open the clip and `hold_last` extra copies of its last frame follow the pass. Then
    "ping-pong" plays the pass backwards to its first frame (both end frames appear twice in a
    row when the clip loops), and "ping-pong (no repeated ends)" stops one frame short of each
    end, so a looping player never shows a frame twice in a row.
    """
    if count < 1:
        raise ValueError(f"a clip needs at least one frame, got {count}.")
    if loop not in LOOP_MODES:
        raise ValueError(f"unknown loop mode '{loop}'; choose one of {', '.join(LOOP_MODES)}.")
    if hold_first < 0 or hold_last < 0:
        raise ValueError(f"holds are counts of extra frames and cannot be negative, got {hold_first}, {hold_last}.")
    one_pass = list(range(count - 1, -1, -1)) if reverse else list(range(count))
    order = [one_pass[0]] * hold_first + one_pass + [one_pass[-1]] * hold_last
    if loop == "ping-pong":
        order += one_pass[::-1]
    elif loop == "ping-pong (no repeated ends)":
        order += one_pass[-2:0:-1]
    return order


def assemble(frames: torch.Tensor, loop: str = "forward", hold_first: int = 0, hold_last: int = 0,
             reverse: bool = False) -> torch.Tensor:
    """The clip's frames as one IMAGE batch [M, H, W, C], in `frame_order`."""
    order = frame_order(int(frames.shape[0]), loop, hold_first, hold_last, reverse)
    return frames[torch.tensor(order, dtype=torch.long, device=frames.device)]


def even_size(frames: torch.Tensor, mode: str = "pad") -> tuple[torch.Tensor, str]:
    """Make width and height even (H.264 and VP9 in yuv420p need it); returns (frames, what was done).

    "pad" repeats the last row / column, "crop" drops it. The note is "" when nothing changed.
    """
    if mode not in ODD_SIZE_MODES:
        raise ValueError(f"unknown odd-size mode '{mode}'; choose one of {', '.join(ODD_SIZE_MODES)}.")
    height, width = int(frames.shape[1]), int(frames.shape[2])
    if height % 2 == 0 and width % 2 == 0:
        return frames, ""
    if mode == "crop":
        if height < 2 or width < 2:
            raise ValueError(f"a {width}x{height} image is too small to crop to an even size.")
        frames = frames[:, : height - height % 2, : width - width % 2]
        verb = "cropped"
        how = "last row/column dropped"
    else:
        if height % 2:
            frames = torch.cat([frames, frames[:, -1:]], dim=1)
        if width % 2:
            frames = torch.cat([frames, frames[:, :, -1:]], dim=2)
        verb = "padded"
        how = "edge pixels repeated"
    new_height, new_width = int(frames.shape[1]), int(frames.shape[2])
    return frames, f"{verb} {width}x{height} to {new_width}x{new_height} ({how}): this format needs even sizes"
