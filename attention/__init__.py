"""Interpolated attention (pure torch) and the patch callables ComfyUI's ModelPatcher calls."""
