"""ComfyUI node classes of the pack, one module per feature; each module exports its own mappings."""
from . import apply, best_frame, conditioning, ipadapter, latent, report, sampler, schedule, smooth, video
from . import keyframes

# Order of the nodes in ComfyUI's menu: making a sequence, then extras, then output.
_MODULES = (schedule, conditioning, latent, apply, sampler, smooth, ipadapter, best_frame, report, video)
_MODULES += (keyframes,)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

# Every node checks its sockets and FLOAT widgets before running (see input_guard.py).
from .input_guard import guard_node_inputs  # noqa: E402

for _name, _node_class in NODE_CLASS_MAPPINGS.items():
    guard_node_inputs(_node_class, NODE_DISPLAY_NAME_MAPPINGS.get(_name, _name))
