"""ComfyUI node classes of the pack, one module per feature; each module exports its own mappings."""
from . import apply, best_frame, conditioning, ipadapter, latent, report, sampler, schedule, smooth, video
from . import shares
from . import layout, region_sampler, region_weights, regions
from . import editing
from . import text_encode
from . import keyframes

# Order of the nodes in ComfyUI's menu: making a sequence, then extras, then output.
_MODULES = (schedule, conditioning, latent, apply, sampler, smooth, ipadapter, best_frame, report, video, shares)
# Spatial-temporal attention control (AID/spatial-temporal): regions, layouts, weights, sampling.
_MODULES += (regions, layout, region_weights, region_sampler)
# Real-image editing: inversion and the hold of endpoint A.
_MODULES += (editing,)
# Diffusion transformers: prompts of one token length.
_MODULES += (text_encode,)
# Keyframe sequences: A -> B -> C ..., holds, easing, loops.
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
