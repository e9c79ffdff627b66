"""Write a clip's frames to mp4 (H.264), webm (VP9), gif or animated webp.

mp4 and webm go through PyAV (libx264 / libvpx-vp9, yuv420p, constant-quality crf), gif and webp
through Pillow. Every encoder writes to a hidden temporary file beside the target and renames it
when complete, so a failed or interrupted encode leaves nothing half-written.

GIF palettes: each frame gets its own 256-colour median-cut palette and is mapped onto it with
Floyd-Steinberg dithering. PyAV's gif encoder was not used: it takes palette frames only, and
PyAV's rgb24 -> rgb8/pal8 conversion uses a fixed 3-3-2 palette that bands smooth gradients.

GIF and WebP store frame durations rather than a rate, and both writers (Pillow's GIF writer,
libwebp's animation encoder) store a run of identical frames once with the durations added up;
players show it for the same time. Durations come from rounding each frame's start time, so the
clip's total length and its average rate are exact to the format's tick (10 ms GIF, 1 ms WebP).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np
import torch

from .files import atomic_output

GIF_MAX_FPS = 50.0  # GIF delays are whole hundredths of a second; browsers slow down delays under 0.02 s


@dataclass(frozen=True)
class VideoFormat:
    """One output format: its widget label, file extension and whether width/height must be even."""

    label: str
    extension: str
    needs_even_size: bool


FORMATS = {f.label: f for f in (
    VideoFormat("mp4 (h264)", "mp4", True),
    VideoFormat("webm (vp9)", "webm", True),
    VideoFormat("gif", "gif", False),
    VideoFormat("webp", "webp", False),
)}
MAX_CRF = {"mp4": 51, "webm": 63}


def fps_fraction(fps: float) -> Fraction:
    """The frame rate as an exact fraction that round-trips the typed number (12 -> 12/1, 29.97 -> 2997/100)."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"the frame rate must be a positive number, got {fps}.")
    return Fraction(fps).limit_denominator(1001)


def frame_times(count: int, fps: float, ticks_per_second: int) -> list[int]:
    """Start tick of each of `count` frames plus the end tick: round(i * ticks_per_second / fps), exactly."""
    rate = fps_fraction(fps)
    return [round(Fraction(i * ticks_per_second) / rate) for i in range(count + 1)]


def to_rgb8(frames: torch.Tensor) -> np.ndarray:
    """IMAGE [N, H, W, C] float 0..1 -> uint8 RGB array [N, H, W, 3] (alpha dropped, grey repeated)."""
    if frames.shape[-1] == 1:
        frames = frames.expand(*frames.shape[:-1], 3)
    pixels = (frames[..., :3].detach().to("cpu", torch.float32).clamp(0.0, 1.0) * 255.0).round()
    return pixels.to(torch.uint8).numpy()


def encode(path: str, frames: Sequence[np.ndarray], format_label: str, fps: float, *, crf: int = 19,
           webp_quality: int = 90, metadata: dict | None = None,
           progress: Callable[[int, int], None] | None = None) -> None:
    """Encode `frames` (uint8 [H, W, 3] arrays of one size, in play order) into `path`.

    `metadata` (e.g. prompt and workflow) is stored as JSON strings: container tags for mp4/webm,
    EXIF like ComfyUI's own WebP saver, a comment for GIF. `progress(done, total)` is called
    after each frame and may raise to abort (the partial file is then removed).
    """
    video_format = FORMATS.get(format_label)
    if video_format is None:
        raise ValueError(f"unknown format '{format_label}'; choose one of {', '.join(FORMATS)}.")
    if len(frames) == 0:
        raise ValueError("there are no frames to encode.")
    height, width = frames[0].shape[:2]
    if video_format.needs_even_size and (height % 2 or width % 2):
        raise ValueError(f"{video_format.label} needs an even width and height, got {width}x{height}.")
    extension = video_format.extension
    if extension in MAX_CRF and not 0 <= crf <= MAX_CRF[extension]:
        raise ValueError(f"crf {crf} is outside 0..{MAX_CRF[extension]} for {video_format.label}.")
    if extension == "webp" and not 0 <= webp_quality <= 100:
        raise ValueError(f"webp quality {webp_quality} is outside 0..100.")
    if extension == "gif" and fps > GIF_MAX_FPS:
        raise ValueError(f"GIF cannot play faster than {GIF_MAX_FPS:g} fps, got {fps:g}.")
    report = progress or (lambda done, total: None)
    with atomic_output(path) as partial:
        if extension == "mp4":
            _encode_pyav(partial, frames, "mp4", "libx264", fps, {"crf": str(crf), "preset": "medium"},
                         {"movflags": "+faststart+use_metadata_tags"}, metadata, report)
        elif extension == "webm":
            _encode_pyav(partial, frames, "webm", "libvpx-vp9", fps,
                         {"crf": str(crf), "deadline": "good", "cpu-used": "4", "row-mt": "1"},
                         {}, metadata, report)
        elif extension == "gif":
            _encode_gif(partial, frames, fps, metadata, report)
        else:
            _encode_webp(partial, frames, fps, webp_quality, metadata, report)


def _encode_pyav(path, frames, container_format, codec, fps, stream_options, container_options, metadata, report):
    import av

    rate = fps_fraction(fps)
    height, width = frames[0].shape[:2]
    with av.open(path, mode="w", format=container_format, options=container_options) as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = json.dumps(value)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = stream_options
        if codec == "libvpx-vp9":
            stream.bit_rate = 0  # constant quality: crf alone sets the quality
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = index, 1 / rate
            container.mux(stream.encode(frame))
            report(index + 1, len(frames))
        container.mux(stream.encode(None))


def _encode_gif(path, frames, fps, metadata, report):
    from PIL import Image

    images = []
    for index, array in enumerate(frames):
        image = Image.fromarray(np.ascontiguousarray(array), "RGB")
        palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        images.append(image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG))
        report(index + 1, len(frames))
    ticks = frame_times(len(images), fps, 100)
    durations = [10 * (end - start) for start, end in zip(ticks, ticks[1:])]
    options = {"comment": json.dumps(metadata)} if metadata else {}
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                   optimize=False, **options)


def _encode_webp(path, frames, fps, quality, metadata, report):
    from PIL import Image

    images = []
    for index, array in enumerate(frames):
        images.append(Image.fromarray(np.ascontiguousarray(array), "RGB"))
        report(index + 1, len(frames))
    ticks = frame_times(len(images), fps, 1000)
    durations = [end - start for start, end in zip(ticks, ticks[1:])]
    exif = images[0].getexif()
    if metadata:
        # ComfyUI's SaveAnimatedWEBP layout: "prompt" in tag 0x0110 (Model), other keys from 0x010F (Make) down.
        tag = 0x010F
        for key, value in metadata.items():
            if key == "prompt":
                exif[0x0110] = f"prompt:{json.dumps(value)}"
            else:
                exif[tag] = f"{key}:{json.dumps(value)}"
                tag -= 1
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=durations, loop=0,
                   lossless=quality >= 100, quality=int(quality), method=4, exif=exif)
