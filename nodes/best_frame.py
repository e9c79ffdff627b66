"""AID CLIP Scorer Loader and AID Best Frame: keep the frame of a sequence that best matches a text (PAID)."""
from __future__ import annotations

from ..errors import AIDInputError
from ..scoring.clip_scorer import MODEL_FOLDER, ModelFileError, find_model, list_models, where_to_put_models
from ..scoring.selection import best_index, format_scores
from .plotting import line_plot
from .ui import save_preview
from .video import check_image_batch

LOADER_NODE = "AID CLIP Scorer Loader"
BEST_FRAME_NODE = "AID Best Frame"


def missing_model_problem(name) -> str:
    if not list_models():
        return f"there is no CLIP model in the '{MODEL_FOLDER}' model folder."
    return f"'{name}' is not in the '{MODEL_FOLDER}' model folder."


class AIDCLIPScorerLoader:
    """Load a CLIP model (text and image towers) that scores images against a text."""

    DESCRIPTION = ("Loads a CLIP model with both towers for AID Best Frame, from ComfyUI's models/clip_scoring "
                   "folder: a transformers CLIPModel folder (config.json + model.safetensors, plus its tokenizer and "
                   "preprocessor files), e.g. a copy of openai/clip-vit-large-patch14, or a single CLIPModel "
                   ".safetensors file. Nothing is downloaded.")
    CATEGORY = "AID/PAID"
    FUNCTION = "load"
    RETURN_TYPES = ("AID_CLIP_SCORER",)
    RETURN_NAMES = ("scorer",)
    OUTPUT_TOOLTIPS = ("The CLIP model for AID Best Frame.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (list_models(), {"tooltip": "A CLIPModel folder or .safetensors file in models/"
                                                      f"{MODEL_FOLDER}. A single file is read with <name>.json "
                                                      "beside it as its config, or else as an OpenAI CLIP layout."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        # Replaces ComfyUI's combo check, whose "not in list" says nothing about where models go.
        if model_name is not None and find_model(model_name) is None:
            return str(AIDInputError(LOADER_NODE, "model_name", missing_model_problem(model_name),
                                     where_to_put_models()))
        return True

    def load(self, model_name):
        from ..scoring.clip_scorer import load_clip_scorer

        path = find_model(model_name)
        if path is None:
            raise AIDInputError(LOADER_NODE, "model_name", missing_model_problem(model_name), where_to_put_models())
        try:
            return (load_clip_scorer(path, model_name),)
        except ModelFileError as error:
            raise AIDInputError(LOADER_NODE, "model_name", str(error), error.fix) from None


class AIDBestFrame:
    """Score every frame against a text with CLIP and return the best one, its index and all scores."""

    DESCRIPTION = ("Compositional generation with PAID: run a sequence from 'a dog' to 'a car' guided by 'a dog "
                   "driving a car', then keep the frame that CLIP finds closest to the guidance text. Scores are "
                   "CLIP's logits (100 x cosine similarity of image and text embeddings for the released models); "
                   "the node shows them as a plot and as text.")
    CATEGORY = "AID/PAID"
    FUNCTION = "select"
    RETURN_TYPES = ("IMAGE", "INT", "FLOAT", "STRING")
    RETURN_NAMES = ("best_frame", "index", "score", "scores")
    OUTPUT_TOOLTIPS = (
        "The frame with the highest score, as a one-image batch.",
        "Its index in the sequence, counting from 0 (e.g. for Image From Batch).",
        "Its score.",
        "Every frame's score in frame order, comma-separated (e.g. '21.3125, 22.0410, ...').",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The sequence (e.g. VAE Decode of the AID Sampler's output)."}),
                "scorer": ("AID_CLIP_SCORER", {"tooltip": "From AID CLIP Scorer Loader."}),
                "text": ("STRING", {"multiline": True, "default": "a dog driving a car",
                                    "tooltip": "What the best frame should show; for compositional generation the "
                                               "PAID guidance prompt."}),
            },
            "optional": {
                "exclude_endpoints": ("BOOLEAN", {"default": False,
                                                  "tooltip": "Choose among the frames between the endpoints only "
                                                             "(the endpoints are plain A and B). Every frame is "
                                                             "still scored."}),
            },
        }

    def select(self, frames, scorer, text, exclude_endpoints=False):
        import comfy.utils

        check_image_batch(BEST_FRAME_NODE, "frames", frames, minimum=3 if exclude_endpoints else 1)
        if not text or not text.strip():
            raise AIDInputError(BEST_FRAME_NODE, "text", "the text is empty.",
                                "write what the best frame should show, e.g. the PAID guidance prompt.")
        frame_count = frames.shape[0]
        bar = comfy.utils.ProgressBar(frame_count)
        scores = [float(s) for s in scorer.score(frames, text, lambda done, total: bar.update_absolute(done, total))]
        candidates = range(1, frame_count - 1) if exclude_endpoints else None
        best = best_index(scores, candidates)
        ui = {"images": save_preview([score_plot(scores, best, text)], "aid_best_frame"),
              "text": [score_summary(scores, best, scorer, text)]}
        return {"ui": ui, "result": (frames[best:best + 1].clone(), best, scores[best], format_scores(scores))}


def score_summary(scores, best, scorer, text) -> str:
    """What the node shows as text: the best frame, then each frame's score."""
    lines = [f"best frame {best} (score {scores[best]:.4f}) of {len(scores)}, CLIP model {scorer.name}"]
    if scorer.source != "folder":
        lines.append(f"({scorer.source})")
    tokens = scorer.token_count(text)
    if tokens > scorer.max_tokens:
        lines.append(f"note: the text has {tokens} tokens; CLIP reads the first {scorer.max_tokens}.")
    lines += [f"frame {f}: {s:.4f}" + ("  <- best" if f == best else "") for f, s in enumerate(scores)]
    return "\n".join(lines)


def score_plot(scores, best, text):
    """CLIP score per frame, the chosen frame marked."""
    title = text.strip().splitlines()[0]
    title = f"CLIP score vs '{title[:40]}{'...' if len(title) > 40 else ''}'"
    return line_plot([("score", list(range(len(scores))), scores), (f"best: frame {best}", [best], [scores[best]])],
                     title=title, x_label="frame f", y_label="score", size=(384, 240))


NODE_CLASS_MAPPINGS = {"AIDCLIPScorerLoader": AIDCLIPScorerLoader, "AIDBestFrame": AIDBestFrame}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDCLIPScorerLoader": LOADER_NODE, "AIDBestFrame": BEST_FRAME_NODE}
