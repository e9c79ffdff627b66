"""Pick the frame of a sequence that best matches a text by CLIP score (docs/smooth.md).

Compositional generation runs PAID between two prompts and keeps the frame whose CLIP image
embedding is closest to the guidance prompt's text embedding. Plain tensors only; the model
that makes the embeddings lives in clip_scorer.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Image normalisation of OpenAI CLIP, the default when a model folder has no preprocessor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_pixels(images: torch.Tensor, size: int, crop: tuple[int, int], mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """IMAGE [N, H, W, C] in 0..1 -> CLIP pixel values [N, 3, crop_h, crop_w].

    As CLIP's image processor: shorter side to `size` (bicubic, antialiased), centre crop,
    quantise to 8 bits, normalise. C may be 1 (grey, repeated) or 4 (alpha dropped).
    """
    pixels = images[..., :3] if images.shape[-1] >= 3 else images[..., :1].expand(*images.shape[:-1], 3)
    pixels = pixels.movedim(-1, 1).float()
    crop_h, crop_w = crop
    height, width = pixels.shape[-2:]
    scale = max(size / min(height, width), crop_h / height, crop_w / width)
    resized = (max(crop_h, round(height * scale)), max(crop_w, round(width * scale)))
    if resized != (height, width):
        pixels = F.interpolate(pixels, size=resized, mode="bicubic", antialias=True, align_corners=False)
    top, left = (resized[0] - crop_h) // 2, (resized[1] - crop_w) // 2
    pixels = pixels[:, :, top:top + crop_h, left:left + crop_w]
    pixels = (pixels.clamp(0.0, 1.0) * 255.0).round() / 255.0
    mean = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def clip_scores(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """CLIP score of each image against one text: exp(logit_scale) * cosine similarity.

    image_embeds [N, D], text_embeds [D] or [1, D] -> [N]; the same numbers as CLIP's
    `logits_per_image` (100 x cosine for the released models).
    """
    text = text_embeds.reshape(1, -1).float()
    cosine = F.cosine_similarity(image_embeds.float(), text, dim=-1)
    return cosine * float(torch.as_tensor(logit_scale, dtype=torch.float64).exp())


def best_index(scores, candidates=None) -> int:
    """Index of the highest score (the first of equal ones), among `candidates` (all frames if None)."""
    scores = [float(s) for s in scores]
    indices = list(range(len(scores))) if candidates is None else list(candidates)
    if not indices:
        raise ValueError("there is no frame to choose from.")
    return max(indices, key=lambda i: (scores[i], -i))


def format_scores(scores) -> str:
    """Scores as a comma-separated line, frame order, four decimals ("21.3125, 22.0410, ...")."""
    return ", ".join(f"{float(s):.4f}" for s in scores)
