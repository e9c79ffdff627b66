"""AID / PAID attention interpolation nodes for ComfyUI.

Importing the pack only defines node classes (and, in a running server, adds the editor's
preview routes under /aid/preview/): it patches nothing in ComfyUI and loads no optional
dependency (those are imported when a node first needs them).
"""
import sys

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes import editor_routes

# ComfyUI serves this folder under /extensions/<pack folder>/; the editor's node help reads
# docs/<NodeId>.md from it (web/docs/, written by tools/node_help.py).
WEB_DIRECTORY = "./web"

# The editor widgets (web/js/) ask these routes for live previews. ComfyUI's server makes its PromptServer before it
# loads custom nodes; a host without one (nodes imported in-process, no server) gets no routes.
_server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
if _server is not None:
    editor_routes.register(_server)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
