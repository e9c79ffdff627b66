"""The paper's sequence metrics (docs/smooth.md) and the frame distances they are built on.

d_i = distance between frames i and i+1; smoothness = 1 - Gini(d) (1 = perfectly even steps),
consistency = mean(d) (lower is better). Three distances share one interface, FrameDistance:

* "pixel" (default, no model): a perceptual proxy in [0, 1], see PixelDistance.
* "clip-vision": cosine distance of CLIP image embeddings from a ComfyUI CLIP_VISION model
  (what the reference uses to pick frames).
* "lpips": LPIPS (AlexNet, v0.1; the paper's metric), only when the lpips package and every
  weight file it needs are already on disk. Nothing is ever downloaded.

Frames are ComfyUI IMAGE tensors [N, H, W, C], float 0..1. No ComfyUI import at module level.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

METRICS = ("auto", "pixel", "clip-vision", "lpips")


def gini(values: Iterable[float]) -> float:
    """Gini coefficient sum_ij |x_i - x_j| / (2 n^2 mean) of non-negative values; 0 for < 2 values or all zero."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if any(not math.isfinite(x) or x < 0 for x in xs):
        raise ValueError("Gini needs finite, non-negative values.")
    total = math.fsum(xs)
    if n < 2 or total == 0.0:
        return 0.0
    # With sorted values, sum_ij |x_i - x_j| = 2 * sum_i (2i - n + 1) x_i  (i from 0).
    weighted = math.fsum((2 * i - n + 1) * x for i, x in enumerate(xs))
    return max(0.0, weighted / (n * total))


def smoothness(distances: Iterable[float]) -> float:
    """1 - Gini of the neighbour distances: 1.0 when every step between frames is the same size."""
    return 1.0 - gini(distances)


def consistency(distances: Iterable[float]) -> float:
    """Mean neighbour distance (lower is better: the frames stay closer to each other)."""
    values = [float(d) for d in distances]
    if not values:
        raise ValueError("consistency needs at least one distance (two frames).")
    return math.fsum(values) / len(values)


class FrameDistance:
    """A perceptual distance between images, batched: `distance(a, b)` gives one value per pair of rows.

    Split in two so callers can cache: `embed(frames)` computes each frame's features once
    (a tensor whose rows follow the frames), `compare(ea, eb)` turns paired rows into distances.
    A sampler that adds frames over time embeds each new frame once and compares embeddings.
    """

    name = "distance"
    batch_size = 16

    @torch.no_grad()
    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Features of frames [N, H, W, C] -> [N, ...], computed `batch_size` frames at a time."""
        if frames.ndim != 4 or frames.shape[0] == 0:
            raise ValueError(f"expected an IMAGE batch [N, H, W, C] with N >= 1, got shape {tuple(frames.shape)}.")
        rgb = _rgb(frames)
        return torch.cat([self._embed(rgb[i:i + self.batch_size]) for i in range(0, rgb.shape[0], self.batch_size)])

    def compare(self, embeddings_a: torch.Tensor, embeddings_b: torch.Tensor) -> torch.Tensor:
        """Distances [N] between row i of `embeddings_a` and row i of `embeddings_b`."""
        raise NotImplementedError

    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        """Distances [N] between paired frames; a batch of one is compared with every frame of the other."""
        embeddings_a, embeddings_b = self.embed(frames_a), self.embed(frames_b)
        if embeddings_a.shape[0] == 1 and embeddings_b.shape[0] > 1:
            embeddings_a = embeddings_a.expand_as(embeddings_b)
        elif embeddings_b.shape[0] == 1 and embeddings_a.shape[0] > 1:
            embeddings_b = embeddings_b.expand_as(embeddings_a)
        return self.compare(embeddings_a, embeddings_b)

    def pairwise(self, frames: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Distances [P] between frames[i] and frames[j] for each (i, j) in `pairs`; each frame is embedded once."""
        if not pairs:
            return torch.zeros(0)
        embeddings = self.embed(frames)
        first = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        second = torch.tensor([j for _, j in pairs], dtype=torch.long)
        return self.compare(embeddings[first], embeddings[second])

    def neighbours(self, frames: torch.Tensor) -> torch.Tensor:
        """Distances [N - 1] between each frame and the next."""
        return self.pairwise(frames, [(i, i + 1) for i in range(int(frames.shape[0]) - 1)])

    def _embed(self, rgb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _rgb(frames: torch.Tensor) -> torch.Tensor:
    """IMAGE [N, H, W, C] -> float32 RGB [N, H, W, 3] (alpha dropped, grey repeated)."""
    if frames.shape[-1] == 1:
        frames = frames.expand(*frames.shape[:-1], 3)
    return frames[..., :3].to(torch.float32)


class PixelDistance(FrameDistance):
    """Perceptual proxy without a model, in [0, 1]: half colour change, half structure change.

    Both frames are area-averaged to 128 x 128 (a blur that ignores noise and fine texture and
    makes the cost independent of resolution). Colour term: mean absolute RGB difference.
    Structure term: DSSIM = (1 - SSIM) / 2 of the luma (Rec. 601) with a 7 x 7 window, which sees
    edges and layout moving while being insensitive to overall brightness and contrast.
    d = (colour + DSSIM) / 2: 0 for identical frames, 1 only for opposite images. Deterministic.
    """

    name = "pixel"
    size = 128
    window = 7

    def _embed(self, rgb):
        return F.adaptive_avg_pool2d(rgb.movedim(-1, 1).cpu(), (self.size, self.size))

    def compare(self, embeddings_a, embeddings_b):
        colour = (embeddings_a - embeddings_b).abs().mean(dim=(1, 2, 3))
        luma_weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        luma_a = (embeddings_a * luma_weights).sum(dim=1, keepdim=True)
        luma_b = (embeddings_b * luma_weights).sum(dim=1, keepdim=True)
        window = min(self.window, luma_a.shape[-2], luma_a.shape[-1])

        def local_mean(x):
            return F.avg_pool2d(x, window, stride=1)

        mean_a, mean_b = local_mean(luma_a), local_mean(luma_b)
        variance_a = local_mean(luma_a * luma_a) - mean_a * mean_a
        variance_b = local_mean(luma_b * luma_b) - mean_b * mean_b
        covariance = local_mean(luma_a * luma_b) - mean_a * mean_b
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        ssim = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
            (mean_a * mean_a + mean_b * mean_b + c1) * (variance_a + variance_b + c2))
        dssim = (1.0 - ssim.mean(dim=(1, 2, 3))) / 2.0
        return ((colour + dssim) / 2.0).clamp(0.0, 1.0)


class ClipVisionDistance(FrameDistance):
    """Cosine distance 1 - cos(e_a, e_b) of CLIP `image_embeds` from a ComfyUI CLIP_VISION model (0..2)."""

    name = "clip-vision"

    def __init__(self, clip_vision, crop: bool = True):
        if not hasattr(clip_vision, "encode_image"):
            raise TypeError("expected a ComfyUI CLIP_VISION model (an object with encode_image).")
        self.clip_vision = clip_vision
        self.crop = crop

    def _embed(self, rgb):
        embeds = self.clip_vision.encode_image(rgb, crop=self.crop)["image_embeds"]
        return F.normalize(embeds.to("cpu", torch.float32), dim=-1)

    def compare(self, embeddings_a, embeddings_b):
        return (1.0 - (embeddings_a * embeddings_b).sum(dim=-1)).clamp(min=0.0)


LPIPS_NET = "alex"
LPIPS_VERSION = "0.1"
_LPIPS_CACHE: dict = {}


def _lpips_files() -> tuple[str, str]:
    """(linear-layer weights inside the lpips package, AlexNet backbone in torch's hub cache)."""
    import lpips

    linear = os.path.join(os.path.dirname(os.path.abspath(lpips.__file__)), "weights", f"v{LPIPS_VERSION}",
                          f"{LPIPS_NET}.pth")
    try:
        from torchvision.models import AlexNet_Weights

        backbone_name = os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    except ImportError:
        backbone_name = "alexnet-owt-7be5be79.pth"
    backbone = os.path.join(torch.hub.get_dir(), "checkpoints", backbone_name)
    return linear, backbone


def lpips_unavailable_reason() -> str | None:
    """None when LPIPS can run from local files only; otherwise what is missing, in words."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return "the lpips package is not installed (pip install lpips)."
    linear, backbone = _lpips_files()
    if not os.path.isfile(linear):
        return f"the lpips package has no {LPIPS_NET} weights at {linear}."
    if not os.path.isfile(backbone):
        return (f"the AlexNet backbone weights are not in torch's hub cache ({backbone}); this pack never "
                "downloads them, copy the file there to enable LPIPS.")
    return None


class LPIPSDistance(FrameDistance):
    """LPIPS v0.1 with the AlexNet trunk, built from local files only.

    The lpips package is asked for a randomly initialised trunk (pnet_rand=True, so torchvision
    downloads nothing) and loads its own linear-layer weights from the file it ships; the trunk
    then gets torchvision's ImageNet AlexNet weights from torch's hub cache. Frames larger than
    256 px on the short side are area-downscaled first. LPIPS is a weighted squared distance of
    unit-normalised features, so a frame's embedding is its features scaled by sqrt(weight /
    positions) and compare() is a plain squared Euclidean distance, equal to lpips' forward().
    """

    name = "lpips"
    max_size = 256

    def __init__(self):
        reason = lpips_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"LPIPS is not available: {reason}")
        linear, backbone = _lpips_files()
        key = (linear, backbone)
        if key not in _LPIPS_CACHE:
            _LPIPS_CACHE.clear()
            _LPIPS_CACHE[key] = _load_lpips(backbone)
        self.model = _LPIPS_CACHE[key]

    def _embed(self, rgb):
        import lpips

        x = rgb.movedim(-1, 1).cpu()
        short_side = min(x.shape[-2:])
        if short_side > self.max_size:
            scale = self.max_size / short_side
            x = F.interpolate(x, size=(round(x.shape[-2] * scale), round(x.shape[-1] * scale)), mode="area")
        outputs = self.model.net.forward(self.model.scaling_layer(2.0 * x - 1.0))
        parts = []
        for layer, features in enumerate(outputs):
            weight = self.model.lins[layer].model[-1].weight.clamp(min=0.0)  # [1, C, 1, 1]
            scaled = lpips.normalize_tensor(features) * weight[0].sqrt()
            parts.append(scaled.flatten(1) / math.sqrt(features.shape[-2] * features.shape[-1]))
        return torch.cat(parts, dim=1)

    def compare(self, embeddings_a, embeddings_b):
        return ((embeddings_a - embeddings_b) ** 2).sum(dim=1)


def _load_lpips(backbone_path: str):
    import warnings

    import lpips

    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=True, net=LPIPS_NET, version=LPIPS_VERSION, pnet_rand=True, verbose=False)
    state = torch.load(backbone_path, map_location="cpu", weights_only=True)
    # lpips keeps torchvision's layer numbers inside its slices: slice2.3.weight <- features.3.weight
    trunk = {name: state[f"features.{name.split('.', 1)[1]}"] for name, _ in model.net.named_parameters()}
    model.net.load_state_dict(trunk)
    return model.eval().requires_grad_(False)


def make_frame_distance(metric: str = "auto", clip_vision=None) -> FrameDistance:
    """The FrameDistance for a metric name; "auto" = CLIP vision if given, else LPIPS if local, else pixel."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}.")
    if metric == "auto":
        if clip_vision is not None:
            return ClipVisionDistance(clip_vision)
        return LPIPSDistance() if lpips_unavailable_reason() is None else PixelDistance()
    if metric == "clip-vision":
        if clip_vision is None:
            raise ValueError("the clip-vision metric needs a CLIP_VISION model.")
        return ClipVisionDistance(clip_vision)
    return LPIPSDistance() if metric == "lpips" else PixelDistance()


def _as_distance(metric) -> FrameDistance:
    return metric if isinstance(metric, FrameDistance) else make_frame_distance(metric)


def neighbour_distances(frames: torch.Tensor, metric: FrameDistance | str = "pixel") -> list[float]:
    """d_i between frames i and i+1 of a sequence [N, H, W, C], as N - 1 floats."""
    return [float(d) for d in _as_distance(metric).neighbours(frames)]


def pairwise_distances(frames: torch.Tensor, pairs: Sequence[tuple[int, int]],
                       metric: FrameDistance | str = "pixel") -> list[float]:
    """Distances between arbitrary frames (i, j) of a batch, each frame embedded once."""
    return [float(d) for d in _as_distance(metric).pairwise(frames, pairs)]


@dataclass(frozen=True)
class SequenceDistances:
    """Neighbour distances of a sequence and what they were measured with (the AID_DISTANCES value)."""

    distances: tuple[float, ...]
    metric: str
    coefficients: tuple[float, ...] | None = None

    def __post_init__(self):
        if not self.distances:
            raise ValueError("a sequence of two or more frames has at least one distance.")
        if self.coefficients is not None and len(self.coefficients) != len(self.distances) + 1:
            raise ValueError(f"{len(self.coefficients)} coefficients for {len(self.distances) + 1} frames.")

    @property
    def frames(self) -> int:
        return len(self.distances) + 1

    @property
    def smoothness(self) -> float:
        return smoothness(self.distances)

    @property
    def consistency(self) -> float:
        return consistency(self.distances)

    @property
    def largest_step(self) -> int:
        """Index i of the largest step (between frames i and i + 1); the first one on ties."""
        return max(range(len(self.distances)), key=lambda i: (self.distances[i], -i))

    def to_dict(self) -> dict:
        """Plain JSON-ready summary."""
        step = self.largest_step
        return {
            "metric": self.metric,
            "frames": self.frames,
            "distances": list(self.distances),
            "smoothness": self.smoothness,
            "consistency": self.consistency,
            "largest_step": {"index": step, "from_frame": step, "to_frame": step + 1,
                             "distance": self.distances[step]},
            "coefficients": None if self.coefficients is None else list(self.coefficients),
        }


def measure_sequence(frames: torch.Tensor, metric: FrameDistance | str = "pixel",
                     coefficients: Sequence[float] | None = None) -> SequenceDistances:
    """Neighbour distances of `frames` [N >= 2, H, W, C] with their metric and (optional) coefficients."""
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"a sequence needs at least 2 frames, got shape {tuple(frames.shape)}.")
    distance = _as_distance(metric)
    return SequenceDistances(tuple(neighbour_distances(frames, distance)), distance.name,
                             None if coefficients is None else tuple(float(c) for c in coefficients))
