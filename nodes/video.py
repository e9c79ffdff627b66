"""AID Frames to Video: assemble a frame batch into a clip (loop, hold, reverse) and save mp4, webm, gif or webp."""
from __future__ import annotations

import os

import torch

from ..errors import AIDInputError, plural
from ..video import (FORMATS, GIF_MAX_FPS, LOOP_MODES, MAX_CRF, ODD_SIZE_MODES, encode, even_size, fps_fraction,
                     frame_order, to_rgb8)

try:  # the VIDEO type and its in-memory implementation (ComfyUI >= 0.3.4x)
    from comfy_api.latest import InputImpl, Types
except ImportError:  # an older host or no host: the node still saves files and returns IMAGE
    InputImpl = Types = None

NODE_NAME = "AID Frames to Video"
MAX_NAME_BYTES = 200  # of one path part in filename_prefix: 255 (ext4, NTFS, APFS) less "_00001_.webm" and room
HAS_VIDEO = InputImpl is not None
# One crf widget serves mp4 and webm, so it offers only what both accept (webm's 52-63, its lowest
# qualities, are left out rather than offering values that mp4 refuses).
CRF_WIDGET_MAX = min(MAX_CRF.values())


def output_file(node: str, prefix: str, extension: str, width: int = 0, height: int = 0) -> tuple[str, str, str]:
    """(full path, file name, subfolder) of the next `<prefix>_NNNNN_.<ext>` in ComfyUI's output folder.

    ComfyUI's save-path helper refuses prefixes that resolve outside the output folder ('../x',
    absolute paths) by raising; that becomes an AIDInputError naming `filename_prefix`.
    """
    import folder_paths

    if not prefix or not prefix.strip():
        raise AIDInputError(node, "filename_prefix", "it is empty.", "type a name such as 'AID/interpolation'.")
    if "\x00" in prefix:
        raise AIDInputError(node, "filename_prefix", "it contains a NUL character, which no file name can hold.",
                            "remove it (type a name such as 'AID/interpolation').")
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in prefix.replace("\\", "/").split("/"))
    if longest > MAX_NAME_BYTES:
        raise AIDInputError(node, "filename_prefix", f"one folder or file name in it is {longest} bytes long; file "
                            f"systems allow {MAX_NAME_BYTES} with the counter and extension this node adds.",
                            "use shorter names ('/' separates sub-folders).")
    output_dir = folder_paths.get_output_directory()
    try:
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, output_dir, width, height)
    except OSError as error:
        raise AIDInputError(node, "filename_prefix", f"could not create the folder for '{prefix}' ({error}).",
                            "check that ComfyUI's output folder is writable.") from None
    except Exception:  # ComfyUI raises a bare Exception (ValueError on Windows drives) for paths outside output/
        raise AIDInputError(node, "filename_prefix", f"'{prefix}' points outside ComfyUI's output folder.",
                            "use a relative name without '..', e.g. 'AID/interpolation' "
                            "(sub-folders inside the output folder are fine).") from None
    filename = f"{name}_{counter:05}_.{extension}"
    return os.path.join(folder, filename), filename, subfolder


def workflow_metadata(prompt, extra_pnginfo) -> dict | None:
    """The prompt and workflow to embed in saved files, as core savers do; None with --disable-metadata."""
    from comfy.cli_args import args

    if args.disable_metadata:
        return None
    metadata = dict(extra_pnginfo or {})
    if prompt is not None:
        metadata["prompt"] = prompt
    return metadata or None


def check_image_batch(node: str, input_name: str, images, minimum: int = 1) -> None:
    """An IMAGE tensor [N >= minimum, H, W, C] with C in 1, 3, 4."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise AIDInputError(node, input_name, f"expected an IMAGE batch [frames, height, width, 3], got {shape}.",
                            "connect an IMAGE output, e.g. VAE Decode after the AID sampler.")
    if images.shape[0] < minimum:
        raise AIDInputError(node, input_name, f"the batch has {plural(images.shape[0], 'frame')}, fewer than {minimum}.",
                            "connect the whole sequence (endpoints included).")


def _progress():
    """Per-frame callback: ComfyUI's progress bar, and a stop when the user interrupts."""
    import comfy.model_management
    import comfy.utils

    bar = None

    def update(done, total):
        nonlocal bar
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar = bar or comfy.utils.ProgressBar(total)
        bar.update_absolute(done, total)

    return update


class AIDFramesToVideo:
    """Save an interpolation sequence as a playable clip and show it in the UI."""

    DESCRIPTION = ("Assembles the frames into a clip (forward or ping-pong, endpoint holds, reverse) and saves it "
                   "to ComfyUI's output folder as mp4 (H.264), webm (VP9), gif or animated webp, with the prompt and "
                   "workflow embedded. Put it at the end of a workflow; the node shows the animation.")
    CATEGORY = "AID/output"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "VIDEO") if HAS_VIDEO else ("IMAGE",)
    RETURN_NAMES = ("frames", "video") if HAS_VIDEO else ("frames",)
    OUTPUT_TOOLTIPS = (("The clip's frames as saved: loop, holds and reverse applied (and the even-size fix for "
                        "mp4/webm)."),
                       ("The clip as a VIDEO (even size), for Save Video and other video nodes."))[:len(RETURN_TYPES)]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The sequence, first to last frame (e.g. VAE Decode of the AID "
                                                "sampler's latents)."}),
                "filename_prefix": ("STRING", {"default": "AID/interpolation",
                                               "tooltip": "File name inside ComfyUI's output folder; '/' makes "
                                                          "sub-folders. A counter and the extension are added."}),
                "format": (list(FORMATS), {"default": "mp4 (h264)",
                                           "tooltip": "mp4 plays everywhere; webm is smaller; gif for chats and "
                                                      f"forums (at most {GIF_MAX_FPS:g} fps, 256 colours a frame); "
                                                      "webp is an animated image with full colour."}),
                "fps": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 120.0, "step": 0.01,
                                  "tooltip": "Frames per second of the clip (29.97 is stored as 2997/100)."}),
                "loop": (list(LOOP_MODES), {"default": "forward",
                                            "tooltip": "forward: first to last. ping-pong: there and back. "
                                                       "ping-pong (no repeated ends): there and back without "
                                                       "showing the turning frames twice, for seamless loops."}),
                "hold_first": ("INT", {"default": 0, "min": 0, "max": 10000,
                                       "tooltip": "Extra frames that show the first frame before the clip moves."}),
                "hold_last": ("INT", {"default": 0, "min": 0, "max": 10000,
                                      "tooltip": "Extra frames that show the last frame of the pass (the "
                                                 "turning point in ping-pong)."}),
                "reverse": ("BOOLEAN", {"default": False,
                                        "tooltip": "Play the sequence from the last frame to the first (applied "
                                                   "before looping and holds)."}),
                "odd_size": (list(ODD_SIZE_MODES), {"default": "pad",
                                                    "tooltip": "mp4/webm (and VIDEO) need an even width and "
                                                               "height: pad repeats the edge row/column, crop "
                                                               "drops it. The node says what it did."}),
                "crf": ("INT", {"default": 19, "min": 0, "max": CRF_WIDGET_MAX,
                                "tooltip": "mp4/webm quality, lower is better and bigger: 0-51 (mp4 18-23 typical, "
                                           "webm 15-35 typical). gif and webp ignore it."}),
                "webp_quality": ("INT", {"default": 90, "min": 0, "max": 100,
                                         "tooltip": "webp quality 0-100; 100 saves lossless."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, filename_prefix, format, fps, loop, hold_first, hold_last, reverse, odd_size, crf,
             webp_quality, prompt=None, extra_pnginfo=None):
        check_image_batch(NODE_NAME, "images", images)
        for name, value, choices in (("format", format, FORMATS), ("loop", loop, LOOP_MODES),
                                     ("odd_size", odd_size, ODD_SIZE_MODES)):
            if value not in choices:
                raise AIDInputError(NODE_NAME, name, f"'{value}' is not an option.",
                                    f"choose one of: {', '.join(choices)}.")
        video_format = FORMATS[format]
        fps = float(fps)
        if not fps > 0 or fps == float("inf"):
            raise AIDInputError(NODE_NAME, "fps", f"{fps} is not a frame rate.", "use a positive number, e.g. 8.")
        if video_format.extension == "gif" and fps > GIF_MAX_FPS:
            raise AIDInputError(NODE_NAME, "fps", f"GIF stores delays in hundredths of a second, so {fps:g} fps "
                                f"cannot play.", f"use at most {GIF_MAX_FPS:g} fps, or mp4/webm/webp.")
        max_crf = MAX_CRF.get(video_format.extension)
        if max_crf is not None and not 0 <= crf <= max_crf:
            raise AIDInputError(NODE_NAME, "crf", f"{crf} is outside {video_format.label}'s range 0-{max_crf}.",
                                f"use 0-{max_crf} (lower is better quality).")
        for name, value in (("hold_first", hold_first), ("hold_last", hold_last)):
            if value < 0:
                raise AIDInputError(NODE_NAME, name, f"{value} is negative.", "use 0 or more extra frames.")

        frames, size_note = images, ""
        if video_format.needs_even_size:
            frames, size_note = _even(images, odd_size)
        order = frame_order(int(frames.shape[0]), loop, hold_first, hold_last, reverse)
        clip = frames[torch.tensor(order, dtype=torch.long, device=frames.device)]
        height, width = int(frames.shape[1]), int(frames.shape[2])
        path, filename, subfolder = output_file(NODE_NAME, filename_prefix, video_format.extension, width, height)

        source = to_rgb8(frames)
        encode(path, [source[i] for i in order], format, fps, crf=crf, webp_quality=webp_quality,
               metadata=workflow_metadata(prompt, extra_pnginfo), progress=_progress())

        rate = fps_fraction(fps)
        summary = (f"{plural(int(images.shape[0]), 'frame')} -> {len(order)} ({loop}"
                   f"{f', hold {hold_first}+{hold_last}' if hold_first or hold_last else ''}"
                   f"{', reversed' if reverse else ''}) at {rate} fps = {float(len(order) / rate):.2f} s, "
                   f"{video_format.label} {width}x{height}: {os.path.join(subfolder, filename)}")
        notes = [summary] + ([size_note] if size_note else [])
        result = (clip,)
        if HAS_VIDEO:
            video_frames = clip
            if not video_format.needs_even_size:
                video_frames, video_note = _even(clip, odd_size)
                if video_note:
                    notes.append(f"VIDEO output {video_note}")
            result += (InputImpl.VideoFromComponents(Types.VideoComponents(images=video_frames, frame_rate=rate)),)
        ui = {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}], "animated": (True,),
              "text": ["\n".join(notes)]}
        return {"ui": ui, "result": result}


def _even(frames, odd_size):
    try:
        return even_size(frames, odd_size)
    except ValueError as error:
        raise AIDInputError(NODE_NAME, "odd_size", str(error), "use 'pad'.") from None


NODE_CLASS_MAPPINGS = {"AIDFramesToVideo": AIDFramesToVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDFramesToVideo": NODE_NAME}
