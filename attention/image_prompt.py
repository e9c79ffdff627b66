"""IP-Adapter image prompts as AID endpoints (docs/how-it-works.md), in plain torch.

IP-Adapter adds a decoupled image cross-attention to every attn2 layer:
    out = Attn(Q, K_txt, V_txt) + s * Attn(Q, K_img, V_img),   K_img = tokens @ W_k_ip^T, V_img likewise,
where the image tokens [T_img, context] come from CLIP-vision output through an image projection
(ImageProjModel for base adapters, Resampler for plus adapters). Here the image term becomes an
`image_branch` of the attention patch (attention/patch.py), with two ways of making a sequence:

- morph: endpoint A's tokens from image A, B's from image B. Frame f's own tokens are the
  projection of lerp(CLIP embeds of A, CLIP embeds of B, t_f), as the reference interpolates the
  CLIP image embeddings before the (nonlinear: LayerNorm, Resampler) projection model; while
  interpolation is active its image attention is interpolated like the text branch (fused outer
  by default), otherwise plain attention over its own tokens. Endpoints get plain IP-Adapter
  attention of their image.
- image-control: endpoint A has no image, B has image B; frame f adds t_f * s * Attn(Q, K_B, V_B).
  This is outer interpolation between "no image term" and B's image term, so frame 0 is the
  text-only generation and the last frame a plain IP-Adapter generation at scale s.

Positive chunks are found as for the text branch (attention/branches.py). Other chunks get the uncond image tokens, as IP-Adapter does (projection of zero
embeddings for base adapters, of a black image's CLIP states for plus adapters): at scale s for
every frame in morph (both endpoints share them), at t_f * s in image-control (frame 0 has no
image term in either branch, exactly like the text-only generation it must equal).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

import torch
import torch.nn.functional as F

from .install import transformer_block_keys
from .interpolation import attention_on_tokens, heads_view, interpolate, tokens_view
from .layout import FrameLayout
from .patch import comfy_attention
from .rows import RowPlans, attend_rows

IMAGE_MODES = ("morph", "image-control")
# IP-Adapter files number the cross-attention layers input blocks first, then output, then middle.
_IP_BLOCK_ORDER = {"input": 0, "output": 1, "middle": 2}
FAMILY_BY_CONTEXT = {768: "SD1.5", 2048: "SDXL"}


class ImagePromptMismatchError(ValueError):
    """An IP-Adapter (or its CLIP-vision input) does not fit the model or encoder it meets."""


# ----------------------------------------------------------------------------------------------
# image projections (the official key names, so a file's image_proj.* loads with strict=True)
# ----------------------------------------------------------------------------------------------


class ImageProjModel(torch.nn.Module):
    """Base adapters: CLIP image embeds [B, clip_dim] -> tokens [B, tokens, context] (Linear, LayerNorm)."""

    def __init__(self, clip_dim: int, context_dim: int, tokens: int):
        super().__init__()
        self.tokens, self.context_dim = tokens, context_dim
        self.proj = torch.nn.Linear(clip_dim, tokens * context_dim)
        self.norm = torch.nn.LayerNorm(context_dim)

    @classmethod
    def from_state_dict(cls, state_dict: dict) -> "ImageProjModel":
        context_dim = state_dict["norm.weight"].shape[0]
        out_dim, clip_dim = state_dict["proj.weight"].shape
        model = cls(clip_dim, context_dim, out_dim // context_dim)
        model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
        return model.eval()

    def forward(self, embeds):
        return self.norm(self.proj(embeds).reshape(embeds.shape[0], self.tokens, self.context_dim))


class PerceiverAttention(torch.nn.Module):
    """Learned queries attend to [image features; queries] (Resampler layer, first half)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.to_q = torch.nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = torch.nn.Linear(dim, 2 * heads * dim_head, bias=False)
        self.to_out = torch.nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, features, queries):
        features, queries = self.norm1(features), self.norm2(queries)
        k, v = self.to_kv(torch.cat([features, queries], dim=1)).chunk(2, dim=-1)
        q = self.to_q(queries)
        batch = q.shape[0]

        def heads(x):
            return x.reshape(batch, x.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.to_out(out.transpose(1, 2).reshape(batch, queries.shape[1], -1))


class Resampler(torch.nn.Module):
    """Plus adapters: CLIP penultimate states [B, 257, width] -> tokens [B, queries, context]."""

    def __init__(self, dim, depth, dim_head, heads, queries, embed_dim, output_dim, ff_mult):
        super().__init__()
        self.latents = torch.nn.Parameter(torch.zeros(1, queries, dim))
        self.proj_in = torch.nn.Linear(embed_dim, dim)
        self.proj_out = torch.nn.Linear(dim, output_dim)
        self.norm_out = torch.nn.LayerNorm(output_dim)
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleList([
                PerceiverAttention(dim, heads, dim_head),
                torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, dim * ff_mult, bias=False),
                                    torch.nn.GELU(), torch.nn.Linear(dim * ff_mult, dim, bias=False)),
            ])
            for _ in range(depth))

    @classmethod
    def from_state_dict(cls, state_dict: dict, dim_head: int = 64) -> "Resampler":
        """Sizes read from the weights; every released plus adapter uses 64-wide heads."""
        _, queries, dim = state_dict["latents"].shape
        depth = len({key.split(".")[1] for key in state_dict if key.startswith("layers.")})
        inner = state_dict["layers.0.0.to_q.weight"].shape[0]
        model = cls(dim=dim, depth=depth, dim_head=dim_head, heads=inner // dim_head, queries=queries,
                    embed_dim=state_dict["proj_in.weight"].shape[1], output_dim=state_dict["proj_out.weight"].shape[0],
                    ff_mult=state_dict["layers.0.1.1.weight"].shape[0] // dim)
        model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
        return model.eval()

    def forward(self, states):
        features = self.proj_in(states)
        latents = self.latents.expand(states.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = attention(features, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm_out(self.proj_out(latents))


# ----------------------------------------------------------------------------------------------
# a loaded adapter and the endpoints made from it
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class IPAdapter:
    """A loaded IP-Adapter: image projection and per-layer (to_k_ip, to_v_ip) weights in file order."""

    variant: str  # "SD1.5", "SD1.5 plus", "SDXL", "SDXL plus"
    image_proj: torch.nn.Module
    layers: tuple  # ((W_k [inner, context], W_v [inner, context]), ...) in IP-Adapter numbering order
    clip_input: str  # "image_embeds" (base) or "penultimate_hidden_states" (plus)
    clip_width: int
    context_dim: int
    name: str = ""

    @property
    def plus(self) -> bool:
        return self.clip_input == "penultimate_hidden_states"

    def endpoint_states(self, states: torch.Tensor) -> torch.Tensor:
        """CLIP-vision states of one endpoint's images -> the adapter's input [1, ...] (float32, CPU).

        Several images in a batch are averaged (one image prompt per endpoint).
        """
        if states.shape[-1] != self.clip_width:
            raise ImagePromptMismatchError(
                f"the {self.variant} IP-Adapter needs {self.clip_width}-wide CLIP-vision {self.clip_input}, the "
                f"CLIP vision model gives {states.shape[-1]}-wide ones ({clip_vision_hint(self)}).")
        return states.float().cpu().mean(dim=0, keepdim=True)

    @torch.no_grad()
    def project(self, states: torch.Tensor) -> torch.Tensor:
        """Adapter inputs [N, ...] -> image tokens [N, T_img, context] through the image projection."""
        return self.image_proj(states.float())

    def image_states(self, encode, images):
        """([the adapter's input for each IMAGE batch [B, H, W, 3]], uncond input), from one encode call.

        `encode(images, name)` returns CLIP-vision output `name` (image_embeds or
        penultimate_hidden_states) of each IMAGE batch in the list. The uncond input is zero embeds
        (base) or a black image's states (plus), as IP-Adapter was trained.
        """
        images = list(images)
        batch = images + ([torch.zeros_like(images[0][:1])] if self.plus else [])  # black at any size stays black
        states = encode(batch, self.clip_input)
        inputs = [self.endpoint_states(s) for s in states[:len(images)]]
        uncond = self.endpoint_states(states[-1]) if self.plus else torch.zeros_like(inputs[0])
        return inputs, uncond

    def endpoint_inputs(self, encode, image_a, image_b):
        """(states_A or None, states_B, uncond states): image_states for endpoint B and, if given, A."""
        inputs, uncond = self.image_states(encode, [image_b] + ([] if image_a is None else [image_a]))
        return (None if image_a is None else inputs[1]), inputs[0], uncond


def clip_vision_hint(adapter: IPAdapter) -> str:
    """Which CLIP vision model an adapter was trained with, from the width it expects."""
    known = {("image_embeds", 1024): "ViT-H/14", ("image_embeds", 1280): "ViT-bigG/14",
             ("image_embeds", 768): "ViT-L/14", ("penultimate_hidden_states", 1280): "ViT-H/14",
             ("penultimate_hidden_states", 1664): "ViT-bigG/14", ("penultimate_hidden_states", 1024): "ViT-L/14"}
    model = known.get((adapter.clip_input, adapter.clip_width))
    return f"this adapter was trained with CLIP {model}" if model else "another CLIP vision model"


def cross_attention_layers(diffusion_model) -> list[tuple[tuple, int, int]]:
    """(key, inner dim, context dim) of every attn2 of a UNet, in IP-Adapter numbering order."""
    keys = sorted(transformer_block_keys(diffusion_model), key=lambda key: (_IP_BLOCK_ORDER[key[0]], key[1], key[2]))
    layers = []
    for key in keys:
        to_k = _transformer_block(diffusion_model, key).attn2.to_k.weight
        layers.append((key, int(to_k.shape[0]), int(to_k.shape[1])))
    return layers


def _transformer_block(diffusion_model, key):
    block_name, number, index = key
    block = diffusion_model.middle_block if block_name == "middle" else getattr(diffusion_model, f"{block_name}_blocks")[number]
    stacks = [module.transformer_blocks for module in block.modules() if hasattr(module, "transformer_blocks")]
    return stacks[0][index]


@dataclass(frozen=True, eq=False)
class ImageEndpoints:
    """Image prompts of a sequence: what AID_IMAGE_ENDPOINTS carries from the endpoints node to the patch."""

    mode: str  # "morph" or "image-control"
    weight: float
    adapter: IPAdapter
    states_a: torch.Tensor | None  # adapter input of image A: [1, width] or [1, 257, width]; None in image-control
    states_b: torch.Tensor
    states_uncond: torch.Tensor

    def __post_init__(self):
        if self.mode not in IMAGE_MODES:
            raise ValueError(f"unknown image mode '{self.mode}', expected one of {', '.join(IMAGE_MODES)}.")
        if (self.mode == "morph") != (self.states_a is not None):
            raise ValueError("morph needs image prompts for both endpoints; image-control has none for A.")

    @property
    def tokens_a(self) -> torch.Tensor | None:
        """Endpoint A's image tokens [T_img, context] (None in image-control)."""
        return None if self.states_a is None else self.adapter.project(self.states_a)[0]

    @property
    def tokens_b(self) -> torch.Tensor:
        """Endpoint B's image tokens [T_img, context]."""
        return self.adapter.project(self.states_b)[0]

    @property
    def tokens_uncond(self) -> torch.Tensor:
        """The negative branch's image tokens [T_img, context]."""
        return self.adapter.project(self.states_uncond)[0]

    @property
    def key_inputs(self) -> tuple:
        """The adapter inputs of the sequence's keys, in key order (morph: A, B)."""
        return (self.states_a, self.states_b)

    def frame_tokens(self, layout) -> torch.Tensor:
        """Morph: each row's own image tokens [F, T_img, context]: projections of lerp(key inputs, t) per row.

        `layout` is an attention.layout.FrameLayout (or a list of coefficients between A and B).
        """
        if not isinstance(layout, FrameLayout):
            layout = FrameLayout.between(layout)
        keys = self.key_inputs
        mixed = torch.cat([torch.lerp(keys[a], keys[b], t) for a, b, t in layout.rows])
        return self.adapter.project(mixed)

    def check_model(self, diffusion_model) -> list[tuple[tuple, int, int]]:
        """The model's cross-attention layers, after checking they are the ones the adapter was made for."""
        adapter = self.adapter
        layers = cross_attention_layers(diffusion_model)
        contexts = {context for _, _, context in layers}
        if contexts and contexts != {adapter.context_dim}:
            model_context = sorted(contexts)[0]
            raise ImagePromptMismatchError(
                f"the IP-Adapter is for {adapter.variant.split()[0]} ({adapter.context_dim}-wide text context) but "
                f"the model is {FAMILY_BY_CONTEXT.get(model_context, str(model_context) + '-wide context')}.")
        if len(layers) != len(adapter.layers):
            raise ImagePromptMismatchError(
                f"the IP-Adapter has {len(adapter.layers)} cross-attention layers but the model has {len(layers)} "
                f"(SD1.5 has 16, SDXL 70), so it was made for another UNet.")
        for (key, inner, context), (w_k, _) in zip(layers, adapter.layers):
            if tuple(w_k.shape) != (inner, context):
                raise ImagePromptMismatchError(
                    f"the IP-Adapter's layer for block {key} is {tuple(w_k.shape)}, the model's is {(inner, context)}.")
        return layers

    @torch.no_grad()
    def branches(self, diffusion_model, interpolation_mode: str, layout) -> dict:
        """One ImagePromptBranch per cross-attention layer key for a batch laid out by `layout` (or coefficients).

        K/V of every token set are projected once here: [1, T_img, inner] for "b" and "uncond", and
        [F, T_img, inner] for the frames' own tokens ("own", morph only; rows 0 and F-1 are A's and B's).
        """
        token_sets = {"b": self.tokens_b[None], "uncond": self.tokens_uncond[None]}
        if self.mode == "morph":
            token_sets["own"] = self.frame_tokens(layout)
        branches = {}
        for (key, _, _), (w_k, w_v) in zip(self.check_model(diffusion_model), self.adapter.layers):
            w_k, w_v = w_k.float(), w_v.float()
            keys_values = {name: (F.linear(tokens.float(), w_k), F.linear(tokens.float(), w_v))
                           for name, tokens in token_sets.items()}
            branches[key] = ImagePromptBranch(self.mode, float(self.weight), interpolation_mode, keys_values)
        return branches


@dataclass(frozen=True, eq=False)
class ImageKeys(ImageEndpoints):
    """Image prompts of N keys (AID_IMAGE_KEYS): image morphing through several pictures.

    Key k's adapter input is key_states[k]; a frame between keys a and b gets its own tokens from
    lerp(input a, input b, t) and interpolated image attention toward the rows of keys a and b, exactly as
    a two-image morph does between its endpoints (ImageEndpoints with the layout of a keyframe run).
    states_a / states_b are the first and last key's.
    """

    key_states: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        if self.mode != "morph" or len(self.key_states) < 2:
            raise ValueError("image keys morph through two or more images.")

    @classmethod
    def morph(cls, weight: float, adapter: IPAdapter, key_states, states_uncond) -> "ImageKeys":
        """Image keys from each key's adapter input [1, ...] and the uncond input."""
        key_states = tuple(key_states)
        return cls("morph", float(weight), adapter, key_states[0], key_states[-1], states_uncond, key_states)

    @property
    def keys(self) -> int:
        """How many keys (images) there are."""
        return len(self.key_states)

    @property
    def key_inputs(self) -> tuple:
        return self.key_states


# ----------------------------------------------------------------------------------------------
# the per-layer image branch called from InterpolationPatch
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImagePromptBranch:
    """Image attention term of one attn2 layer; returns weight * (image attention) shaped like q.

    keys_values: {"b", "uncond"} -> (K [1, T_img, inner], V [1, T_img, inner]) and "own" ->
    (K [F, T_img, inner], V likewise: every row's own image tokens, key rows holding their key's
    image), already projected with this layer's to_k_ip / to_v_ip ("own" only in morph; "b" only in
    image-control). In morph an interior row attends, as in the text branch, to the own tokens of
    the rows of its two keys. Image key sets are short (4 or 16 tokens), so fused modes always join
    them in one attention call, whatever the patch's fusion setting.
    """

    mode: str
    weight: float
    interpolation_mode: str
    keys_values: dict
    _row_plans: dict = field(init=False, default_factory=dict, repr=False)  # frame layout -> its RowPlans

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options; the branch never changes, share it.
        return self

    def to(self, target=None, *args, **kwargs):
        """ModelPatcher calls .to(device) when loading and .to(dtype) with the UNet's dtype."""
        if target is None:
            target = kwargs.get("device", kwargs.get("dtype"))
        if isinstance(target, torch.dtype):
            if not target.is_floating_point:
                return self
            move = lambda x: x.to(dtype=target)  # noqa: E731
        elif isinstance(target, (torch.device, str)):
            move = lambda x: x.to(device=target)  # noqa: E731
        else:
            return self
        moved = {name: (move(k), move(v)) for name, (k, v) in self.keys_values.items()}
        return replace(self, keys_values=moved)

    def _get(self, name, like):
        k, v = self.keys_values[name]
        return k.to(device=like.device, dtype=like.dtype), v.to(device=like.device, dtype=like.dtype)

    def __call__(self, q, extra_options, positive, layout, interpolating):
        """Image term for a batch of len(positive) chunks laid out by `layout` (attention/layout.py).

        positive[c] says whether chunk c is the positive branch.
        """
        frames = q.shape[0] // len(positive)
        attention = comfy_attention(extra_options)
        heads = extra_options["n_heads"]
        out = torch.empty_like(q)
        for chunk, is_positive in enumerate(positive):
            rows = slice(chunk * frames, (chunk + 1) * frames)
            out[rows] = self._chunk(q[rows], is_positive, layout, interpolating, attention, heads)
        return out * self.weight if self.weight != 1.0 else out

    def _chunk(self, q, positive, layout, interpolating, attention, heads):
        """Image attention of one chunk of frames [F, L, C] (unscaled by the weight)."""
        if self.mode == "image-control":
            k, v = self._get("b" if positive else "uncond", q)
            plain = _shared_attention(attention, q, k, v)
            t = torch.tensor(layout.coefficients, dtype=q.dtype, device=q.device)
            return plain * t.reshape(-1, 1, 1)
        if not positive:
            return _shared_attention(attention, q, *self._get("uncond", q))
        k_own, v_own = self._get("own", q)  # each row's own tokens; key rows hold their key's image
        if not interpolating:
            return attention(q, k_own, v_own)
        plans = self._row_plans.get(layout)
        if plans is None:
            plans = self._row_plans[layout] = RowPlans(layout)
        on_heads = attention_on_tokens(attention, heads)
        segment = partial(interpolate, self.interpolation_mode, attention=on_heads)
        views = (heads_view(x, heads) for x in (q, k_own, v_own))
        return tokens_view(attend_rows(plans.get((True,), q.device), *views, on_heads, segment))


def _shared_attention(attention, q, k, v):
    """Attention of every row of q [rows, L, C] over one key set [1, T, C]."""
    rows = q.shape[0]
    return attention(q, k.expand(rows, -1, -1), v.expand(rows, -1, -1))
