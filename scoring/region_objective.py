"""The CLIP objective the spatial-temporal weights are optimised for (spacetime.md section 2), lower is better:

    J(image) = (1 - cos(CLIP(image), CLIP(prompt))) + 5 * sum_i (1 - cos(CLIP(crop_i), CLIP(L_i)))

crop_i is the image inside region i's bounding box (a disc's 0.4 x 0.4 square), L_i its local prompt's text
("a photo of <object i>" unless the region carries its own). The image and every
crop are resized to the CLIP model's input size without cropping (as the paper's code does), and the
pixels are not quantised, so J is differentiable in the image: the gradient optimiser backpropagates
through it. Text embeddings are computed once, without gradients.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOCAL_WEIGHT = 5.0
_DESCRIPTIVE_STARTS = ("a photo of", "a picture of", "an image of", "a painting of", "a drawing of")


def local_text(name: str) -> str:
    """The text a region's crop is scored against: 'a photo of <name>' unless the name already says what it is."""
    name = " ".join(name.split())
    return name if name.lower().startswith(_DESCRIPTIVE_STARTS) else f"a photo of {name}"


def clip_input(images: torch.Tensor, size: tuple[int, int], mean, std) -> torch.Tensor:
    """IMAGE-like [B, H, W, 3] in 0..1 -> normalised CLIP pixels [B, 3, h, w], resized (antialiased), differentiable."""
    pixels = images[..., :3].movedim(-1, 1).float()
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.clamp(0.0, 1.0) - mean) / std


@dataclass
class ObjectiveValue:
    """J per image [B] and its terms [B, 1 + N]: 1 - cos for the whole image, then each region's (unweighted)."""

    total: torch.Tensor
    terms: torch.Tensor


class RegionObjective:
    """J for images of a layout; call with IMAGE-like [B, H, W, 3] (gradients flow when the images have them)."""

    def __init__(self, scorer, prompt: str, names, boxes_for, local_weight: float = LOCAL_WEIGHT, local_texts=None):
        """`boxes_for(height, width)` gives each region's (left, top, right, bottom) pixel box at an image size;
        `local_texts` the text each crop is scored against (default 'a photo of <name>')."""
        self.scorer = scorer
        self.names = tuple(names)
        self.boxes_for = boxes_for
        self.local_weight = float(local_weight)
        texts = tuple(local_texts) if local_texts is not None else tuple(local_text(name) for name in self.names)
        self.texts = (prompt,) + texts
        self.text_embeddings = F.normalize(scorer.text_embeddings(list(self.texts)).float(), dim=-1)  # [1+N, D]

    def image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised projected embeddings [B, D] of CLIP pixels [B, 3, h, w] (float32, on the pixels' device)."""
        model = self.scorer.model
        device = self.scorer._device()
        output = model.vision_model(pixel_values=pixels.to(device=device, dtype=model.dtype))
        return F.normalize(model.visual_projection(output.pooler_output).float(), dim=-1).to(pixels.device)

    def __call__(self, images: torch.Tensor) -> ObjectiveValue:
        preprocessing = self.scorer.preprocessing
        size, mean, std = preprocessing["crop"], preprocessing["mean"], preprocessing["std"]
        height, width = images.shape[1:3]
        inputs = [clip_input(images, size, mean, std)]
        for left, top, right, bottom in self.boxes_for(height, width):
            inputs.append(clip_input(images[:, top:bottom, left:right], size, mean, std))
        batch = images.shape[0]
        embeddings = self.image_embeddings(torch.cat(inputs)).reshape(len(inputs), batch, -1)  # [1+N, B, D]
        texts = self.text_embeddings.to(embeddings.device).clone()  # a normal tensor: autograd may save it
        cosine = (embeddings * texts.unsqueeze(1)).sum(-1)  # [1+N, B]
        terms = (1.0 - cosine).transpose(0, 1)  # [B, 1+N]
        weights = torch.tensor([1.0] + [self.local_weight] * len(self.names), device=terms.device)
        return ObjectiveValue((terms * weights).sum(-1), terms)
