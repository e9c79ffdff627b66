"""The CLIP model that scores frames against a text: where its files live and how they load.

Files go in ComfyUI's model folder `clip_scoring` (models/clip_scoring by default; more paths can
be added under that name in extra_model_paths.yaml). Two layouts are listed:
* a transformers CLIPModel folder (config.json + model.safetensors, with the tokenizer and
  preprocessor files if it has them), e.g. a copy of openai/clip-vit-large-patch14;
* a single CLIPModel .safetensors file, with its CLIPConfig beside it as `<name>.json`, or
  without one read as an OpenAI CLIP layout (64-wide heads, quick_gelu).
Nothing is downloaded: transformers is called with local files only, and missing tokenizer or
preprocessor files fall back to ComfyUI's bundled CLIP tokenizer and CLIP's standard
preprocessing. transformers is imported when a model is loaded, never at import.
"""
from __future__ import annotations

import json
import os
import re

import torch

from .selection import CLIP_MEAN, CLIP_STD, clip_pixels, clip_scores

MODEL_FOLDER = "clip_scoring"
WEIGHTS_EXTENSION = ".safetensors"
IMAGE_BATCH = 16  # frames per image-encoder call


class ModelFileError(ValueError):
    """A CLIP model file or folder that cannot be used; `fix` says what to do about it."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.fix = fix


# ----------------------------------------------------------------------------------------------
# the model folder
# ----------------------------------------------------------------------------------------------


def model_folders() -> list[str]:
    """The paths of the `clip_scoring` model folder; registers models/clip_scoring on first use.

    Registration happens here (when the loader lists or loads models), not at import, so
    loading the pack changes nothing in ComfyUI. Paths a user configured under the same name
    are kept, with the default added after them.
    """
    import folder_paths

    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([default], {WEIGHTS_EXTENSION})
    else:
        folder_paths.add_model_folder_path(MODEL_FOLDER, default)
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def _is_model_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def list_models() -> list[str]:
    """Names ('/'-separated, relative to a model folder) of every CLIPModel folder and .safetensors file."""
    names = set()
    for root in model_folders():
        for folder, subfolders, files in os.walk(root, followlinks=True):
            relative = os.path.relpath(folder, root)
            if folder != root and _is_model_folder(folder):
                names.add(relative.replace(os.sep, "/"))
                subfolders[:] = []
                continue
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for file in files:
                if file.lower().endswith(WEIGHTS_EXTENSION) and not file.startswith("."):
                    names.add(os.path.normpath(os.path.join(relative, file)).replace(os.sep, "/"))
    return sorted(names)


def find_model(name: str) -> str | None:
    """Full path of the folder or file called `name` in a model folder, or None."""
    if not name:
        return None
    relative = os.path.relpath(os.path.join(os.sep, name), os.sep)  # no escaping the folder with '..'
    for root in model_folders():
        path = os.path.join(root, relative)
        if (os.path.isdir(path) and _is_model_folder(path)) or (
                os.path.isfile(path) and path.lower().endswith(WEIGHTS_EXTENSION)):
            return path
    return None


def where_to_put_models() -> str:
    """The sentence every 'model missing' message ends with."""
    folders = " or ".join(model_folders())
    return (f"put a transformers CLIPModel folder (config.json + model.safetensors, plus its tokenizer and "
            f"preprocessor files), e.g. a copy of openai/clip-vit-large-patch14, into {folders} (a single CLIPModel "
            f".safetensors file works too), then refresh the node list (press R).")


# ----------------------------------------------------------------------------------------------
# configs of single files
# ----------------------------------------------------------------------------------------------

_WIDE_VISION = {1280: 16, 1664: 16}  # OpenCLIP ViT-H/14 and ViT-bigG/14: 16 heads, gelu


def _layer_count(shapes: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.encoder\.layers\.(\d+)\.")
    return 1 + max((int(m.group(1)) for key in shapes if (m := pattern.match(key))), default=-1)


def infer_clip_config(shapes: dict) -> dict:
    """A CLIPConfig dict from the tensor shapes of a transformers CLIPModel state dict.

    Head counts and the activation are not stored in the weights: they follow OpenAI CLIP
    (64-wide heads, quick_gelu), and OpenCLIP for 1280/1664-wide image towers (16 heads, gelu).
    """
    def shape(key):
        if key not in shapes:
            raise ModelFileError(f"the file has no tensor '{key}', so it is not a transformers CLIPModel with both "
                                 "towers (OpenCLIP or vision-only files are not read).",
                                 "use a transformers CLIPModel folder or file (keys text_model.*, vision_model.*, "
                                 "text_projection, visual_projection, logit_scale).")
        return tuple(shapes[key])

    vocab, text_width = shape("text_model.embeddings.token_embedding.weight")
    positions = shape("text_model.embeddings.position_embedding.weight")[0]
    vision_width, _, patch, _ = shape("vision_model.embeddings.patch_embedding.weight")
    patches = shape("vision_model.embeddings.position_embedding.weight")[0] - 1
    projection = shape("text_projection.weight")[0]
    if shape("visual_projection.weight")[0] != projection:
        raise ModelFileError("the text and image projections have different widths.",
                             "use the file of a complete CLIPModel.")
    text_layers, vision_layers = _layer_count(shapes, "text_model"), _layer_count(shapes, "vision_model")
    return {
        "text_config": {
            "vocab_size": vocab, "hidden_size": text_width, "num_hidden_layers": text_layers,
            "intermediate_size": shape("text_model.encoder.layers.0.mlp.fc1.weight")[0],
            "num_attention_heads": max(1, text_width // 64), "max_position_embeddings": positions,
            "projection_dim": projection, "hidden_act": "gelu" if vision_width in _WIDE_VISION else "quick_gelu",
            "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407,
        },
        "vision_config": {
            "hidden_size": vision_width, "num_hidden_layers": vision_layers,
            "intermediate_size": shape("vision_model.encoder.layers.0.mlp.fc1.weight")[0],
            "num_attention_heads": _WIDE_VISION.get(vision_width, max(1, vision_width // 64)),
            "image_size": round(patches ** 0.5) * patch, "patch_size": patch, "projection_dim": projection,
            "hidden_act": "gelu" if vision_width in _WIDE_VISION else "quick_gelu",
        },
        "projection_dim": projection,
    }


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------


def _preprocessing(config: dict | None, image_size: int) -> dict:
    """size, crop, mean and std from a preprocessor_config.json dict (None: CLIP's defaults)."""
    config = config or {}

    def edge(value, default):
        if isinstance(value, dict):
            value = value.get("shortest_edge") or min(value.get("height", default), value.get("width", default))
        return int(value or default)

    size = edge(config.get("size"), image_size)
    crop = config.get("crop_size", image_size)
    crop = (int(crop.get("height", image_size)), int(crop.get("width", image_size))) if isinstance(crop, dict) \
        else (int(crop), int(crop))
    return {"size": size, "crop": crop, "mean": tuple(config.get("image_mean", CLIP_MEAN)),
            "std": tuple(config.get("image_std", CLIP_STD))}


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path} cannot be read as JSON ({error}).", "replace it with a valid file.") from None


def _bundled_tokenizer():
    """The CLIP tokenizer files ComfyUI ships (comfy/sd1_tokenizer)."""
    import comfy.sd1_clip
    import transformers

    folder = os.path.join(os.path.dirname(os.path.abspath(comfy.sd1_clip.__file__)), "sd1_tokenizer")
    return transformers.CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def _tokenizer(folder: str | None):
    import transformers

    has_files = folder is not None and (
        os.path.isfile(os.path.join(folder, "tokenizer.json"))
        or all(os.path.isfile(os.path.join(folder, f)) for f in ("vocab.json", "merges.txt")))
    if has_files:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return _bundled_tokenizer()


def _check_clip_config(config: dict, where: str) -> None:
    model_type = config.get("model_type", "clip")
    if model_type != "clip":
        raise ModelFileError(f"{where} describes a '{model_type}' model; scoring needs a CLIPModel with both the "
                             "text and the image tower.",
                             "use a transformers CLIPModel (model_type 'clip'), e.g. openai/clip-vit-large-patch14.")


def _load_folder(folder: str):
    import transformers

    config = _read_json(os.path.join(folder, "config.json"))
    _check_clip_config(config, os.path.join(folder, "config.json"))
    if not any(f.endswith(WEIGHTS_EXTENSION) or f == "model.safetensors.index.json" for f in os.listdir(folder)):
        raise ModelFileError(f"{folder} has no .safetensors weights (pickled .bin files are not loaded).",
                             "save the model with save_pretrained(..., safe_serialization=True) or download its "
                             "model.safetensors into the folder.")
    model, info = transformers.CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                         output_loading_info=True)
    return model, info, _read_json(os.path.join(folder, "preprocessor_config.json")), folder, "folder"


def _load_file(path: str):
    import transformers
    from safetensors import safe_open
    from safetensors.torch import load_file

    # <name>.json beside the file, or beside the file a link points to
    sidecars = dict.fromkeys(os.path.splitext(p)[0] + ".json" for p in (path, os.path.realpath(path)))
    sidecar = next((p for p in sidecars if os.path.isfile(p)), None)
    if sidecar is not None:
        config = _read_json(sidecar)
        _check_clip_config(config, sidecar)
        source = f"config {sidecar}"
    else:
        with safe_open(path, framework="pt") as handle:
            config = infer_clip_config({key: handle.get_slice(key).get_shape() for key in handle.keys()})
        source = "config read from the tensor shapes as an OpenAI CLIP layout"
    state_dict = {key: value for key, value in load_file(path).items() if not key.endswith("position_ids")}
    model, info = transformers.CLIPModel.from_pretrained(None, config=transformers.CLIPConfig(**config),
                                                         state_dict=state_dict, output_loading_info=True)
    return model, info, None, None, source


def load_clip_scorer(path: str, name: str | None = None) -> "CLIPScorer":
    """Load the CLIPModel folder or single file at `path` for scoring (ModelFileError when unusable)."""
    import comfy.model_management as mm

    try:
        model, info, preprocessor, tokenizer_folder, source = (_load_folder if os.path.isdir(path) else _load_file)(path)
    except ModelFileError:
        raise
    except Exception as error:  # transformers / safetensors errors about the files themselves
        raise ModelFileError(f"{path} could not be loaded ({type(error).__name__}: {error}).",
                             "check that the files are a complete transformers CLIPModel (re-copy them if a "
                             "download was cut short).") from error
    missing = [key for key in info.get("missing_keys", []) if not key.endswith("position_ids")]
    if missing:
        raise ModelFileError(f"{path} lacks {len(missing)} weights of a CLIPModel (e.g. {missing[0]}).",
                             "use the complete model: both towers, both projections and logit_scale.")
    tokenizer = _tokenizer(tokenizer_folder)
    if len(tokenizer) > model.config.text_config.vocab_size:
        raise ModelFileError(f"the tokenizer has {len(tokenizer)} tokens but the text tower only "
                             f"{model.config.text_config.vocab_size}.", "put the model's own tokenizer files "
                             "(vocab.json, merges.txt or tokenizer.json) into its folder.")
    load_device, offload_device = mm.text_encoder_device(), mm.text_encoder_offload_device()
    use_fp16 = not mm.is_device_cpu(load_device) and mm.should_use_fp16(load_device, prioritize_performance=False)
    dtype = torch.float16 if use_fp16 else torch.float32
    model = model.to(device=offload_device, dtype=dtype).eval().requires_grad_(False)
    preprocessing = _preprocessing(preprocessor, model.config.vision_config.image_size)
    scorer = CLIPScorer(name or os.path.basename(path), model, tokenizer, preprocessing, load_device, offload_device)
    scorer.source = source
    return scorer


class _Managed(torch.nn.Module):
    """Holds the CLIPModel for ComfyUI's ModelPatcher, which sets attributes (e.g. `device`) that
    transformers models expose as read-only properties."""

    def __init__(self, model):
        super().__init__()
        self.clip = model


class CLIPScorer:
    """AID_CLIP_SCORER: a CLIPModel, its tokenizer and image preprocessing; loaded to the GPU by ComfyUI when used."""

    def __init__(self, name, model, tokenizer, preprocessing: dict, load_device, offload_device):
        import comfy.model_patcher

        self.name = name
        self.source = "folder"  # or where a single file's config came from
        self.model = model
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.patcher = comfy.model_patcher.ModelPatcher(_Managed(model), load_device=load_device,
                                                        offload_device=offload_device)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().cpu())

    def _device(self):
        import comfy.model_management

        comfy.model_management.load_model_gpu(self.patcher)
        return self.patcher.load_device

    def token_count(self, text: str) -> int:
        """Tokens of `text` before truncation, start and end tokens included."""
        return len(self.tokenizer(text)["input_ids"])

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Projected text embeddings [len(texts), D], float32 on the CPU; texts longer than the tower are cut."""
        device = self._device()
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        output = self.model.text_model(input_ids=tokens["input_ids"].to(device),
                                       attention_mask=tokens["attention_mask"].to(device))
        return self.model.text_projection(output.pooler_output).float().cpu()

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor, progress=None) -> torch.Tensor:
        """Projected image embeddings [N, D] (float32, CPU) of an IMAGE batch, IMAGE_BATCH frames per call."""
        import comfy.model_management

        device = self._device()
        dtype = self.model.dtype
        chunks = []
        for start in range(0, images.shape[0], IMAGE_BATCH):
            comfy.model_management.throw_exception_if_processing_interrupted()
            pixels = clip_pixels(images[start:start + IMAGE_BATCH].to(device), **self.preprocessing)
            output = self.model.vision_model(pixel_values=pixels.to(dtype))
            chunks.append(self.model.visual_projection(output.pooler_output).float().cpu())
            if progress is not None:
                progress(min(start + IMAGE_BATCH, images.shape[0]), images.shape[0])
        return torch.cat(chunks)

    def score(self, images: torch.Tensor, text: str, progress=None) -> torch.Tensor:
        """CLIP score [N] of every image against `text` (selection.clip_scores)."""
        return clip_scores(self.image_embeddings(images, progress), self.text_embeddings([text])[0], self.logit_scale)
