"""AID / PAID attention interpolation nodes for ComfyUI.

Importing the pack only defines node classes: it patches nothing in ComfyUI and loads
no optional dependency (those are imported when a node first needs them).
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

# ComfyUI serves this folder under /extensions/<pack folder>/; the editor's node help reads
# docs/<NodeId>.md from it (web/docs/, written by tools/node_help.py).
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
