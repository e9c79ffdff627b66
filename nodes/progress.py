"""Progress of the AID samplers: ComfyUI's progress bar with latent previews."""
from __future__ import annotations


def sampler_progress(model):
    """A progress(done, total, x0) function that drives ComfyUI's progress bar with latent previews."""
    import comfy.utils
    import latent_preview

    previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)
    bar = comfy.utils.ProgressBar(1)

    def progress(done, total, x0):
        preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer is not None else None
        bar.update_absolute(done, total, preview)

    return progress
