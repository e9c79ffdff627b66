"""AID / PAID attention interpolation nodes for ComfyUI.

Importing the pack only defines node classes: it patches nothing in ComfyUI and loads
no optional dependency (those are imported when a node first needs them).
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
