"""ComfyUI node classes of the pack, one module per feature; each module exports its own mappings."""
from . import apply, conditioning, latent, sampler, schedule
from . import report, video
from . import smooth
from . import best_frame
from . import ipadapter

_MODULES = (schedule, conditioning, latent, apply, sampler)
_MODULES += (video,)
_MODULES += (report,)
_MODULES += (smooth,)
_MODULES += (best_frame,)
_MODULES += (ipadapter,)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
