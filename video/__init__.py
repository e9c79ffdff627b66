"""Frame assembly (loop, hold, reverse, even size) and file encoders for finished sequences.

Pure library code: no ComfyUI imports, no node classes. PyAV and Pillow (both ComfyUI
dependencies) are imported when an encoder first runs.
"""
from .assemble import LOOP_MODES, ODD_SIZE_MODES, assemble, even_size, frame_order
from .encode import FORMATS, GIF_MAX_FPS, MAX_CRF, VideoFormat, encode, fps_fraction, frame_times, to_rgb8
from .files import atomic_output, write_text

__all__ = ["LOOP_MODES", "ODD_SIZE_MODES", "FORMATS", "GIF_MAX_FPS", "MAX_CRF", "VideoFormat", "assemble",
           "atomic_output", "encode", "even_size", "fps_fraction", "frame_order", "frame_times", "to_rgb8",
           "write_text"]
