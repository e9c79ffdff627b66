"""AID CLIP Scorer Loader and AID Best Frame on the real host, with random-weight CLIP models in the real layouts.

Scores are checked against transformers' own CLIPModel.logits_per_image on the same pixels and
tokens (float32 on the CPU, so equal to 1e-4 relative), and the preprocessing against ComfyUI's
CLIP vision preprocessing.
"""
import json
import shutil

import pytest
import torch

from aid_pack.errors import AIDInputError
from aid_pack.nodes.best_frame import AIDBestFrame, AIDCLIPScorerLoader
from aid_pack.scoring.clip_scorer import MODEL_FOLDER, infer_clip_config, load_clip_scorer
from aid_pack.scoring.selection import best_index, clip_pixels, clip_scores, format_scores

TEXT = "a dog driving a car"


def frames(count=5, height=48, width=64, seed=0):
    return torch.rand(count, height, width, 3, generator=torch.Generator().manual_seed(seed))


def reference_logits(model_dir, images, text, tokenizer_dir=None):
    """transformers' CLIPModel(...).logits_per_image[:, 0] for `images` and `text`."""
    import transformers

    model = (transformers.CLIPModel.from_pretrained(model_dir, local_files_only=True) if isinstance(model_dir, str)
             else model_dir)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tokenizer_dir or model_dir, local_files_only=True)
    size = model.config.vision_config.image_size
    with torch.no_grad():
        out = model(input_ids=tokenizer([text], return_tensors="pt")["input_ids"],
                    pixel_values=clip_pixels(images, size, (size, size)))
    return out.logits_per_image[:, 0]


@pytest.fixture(scope="module")
def scorer(clip_scorer_name):
    return AIDCLIPScorerLoader().load(clip_scorer_name)[0]


@pytest.fixture(scope="module")
def linked(link_model, tmp_path_factory):
    """link(path) -> name: put a file or folder made by a test into models/clip_scoring."""
    return lambda path: link_model(MODEL_FOLDER, path)


def test_loader_lists_the_folder_and_registers_models_clip_scoring(comfy, comfy_base, clip_scorer_name):
    import folder_paths

    options = AIDCLIPScorerLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert clip_scorer_name in options
    assert str(comfy_base / "models" / MODEL_FOLDER) in folder_paths.get_folder_paths(MODEL_FOLDER)
    assert AIDCLIPScorerLoader.VALIDATE_INPUTS(clip_scorer_name) is True
    assert AIDCLIPScorerLoader.VALIDATE_INPUTS(None) is True  # linked input: checked at run time


def test_scores_equal_transformers_logits_per_image(scorer, clip_scorer_name):
    from aid_harness.models import ensure_clip_model

    images = frames()
    scores = scorer.score(images, TEXT)
    expected = reference_logits(str(ensure_clip_model()), images, TEXT)
    assert torch.allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert scores.std() > 0  # frames are told apart


def test_preprocessing_matches_comfyui_clip_vision(comfy):
    import comfy.clip_vision

    images = frames(3, 300, 200)
    ours = clip_pixels(images, 224, (224, 224))
    theirs = comfy.clip_vision.clip_preprocess(images, 224)
    assert ours.shape == (3, 3, 224, 224)
    assert torch.allclose(ours, theirs, atol=1e-5)
    # grey and RGBA frames are read as RGB
    assert torch.allclose(clip_pixels(images[..., :1], 224, (224, 224)),
                          clip_pixels(images[..., :1].expand(-1, -1, -1, 3), 224, (224, 224)))
    rgba = torch.cat([images, torch.ones_like(images[..., :1])], dim=-1)
    assert torch.equal(clip_pixels(rgba, 224, (224, 224)), ours)


def test_clip_score_math():
    image = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    scores = clip_scores(image, torch.tensor([3.0, 0.0]), torch.log(torch.tensor(100.0)))
    assert torch.allclose(scores, torch.tensor([100.0, 100 / 2 ** 0.5, -100.0]))
    assert best_index([1.0, 3.0, 3.0, 2.0]) == 1  # first of equal scores
    assert best_index([9.0, 3.0, 4.0, 9.0], candidates=range(1, 3)) == 2
    assert format_scores([1, 2.5]) == "1.0000, 2.5000"


def test_best_frame_returns_the_argmax_of_its_scores(scorer):
    images = frames(6)
    output = AIDBestFrame().select(images, scorer, TEXT)
    best_frame, index, score, scores_text = output["result"]
    scores = [float(s) for s in scores_text.split(",")]
    assert len(scores) == 6
    assert index == max(range(6), key=lambda f: scores[f])
    assert torch.allclose(torch.tensor(scores), scorer.score(images, TEXT), atol=1e-4)
    assert torch.equal(best_frame, images[index:index + 1]) and best_frame.shape == (1, 48, 64, 3)
    assert score == pytest.approx(scores[index], abs=1e-4)
    text = output["ui"]["text"][0]
    assert text.startswith(f"best frame {index} ") and f"frame {index}: " in text and "<- best" in text
    assert len(output["ui"]["images"]) == 1


def test_exclude_endpoints_chooses_among_interior_frames(scorer):
    images = frames(5, seed=3)
    order = torch.argsort(scorer.score(images, TEXT), descending=True)
    images = images[order]  # best-scoring frame first, so an endpoint is the overall argmax
    assert AIDBestFrame().select(images, scorer, TEXT)["result"][1] == 0
    best_frame, index, _, scores_text = AIDBestFrame().select(images, scorer, TEXT, exclude_endpoints=True)["result"]
    scores = [float(s) for s in scores_text.split(",")]
    assert index == 1 + max(range(3), key=lambda f: scores[1 + f])
    assert torch.equal(best_frame[0], images[index])


def test_long_text_is_cut_and_said(scorer):
    text = ", ".join(["a small brown dog driving a red car through the city"] * 10)
    output = AIDBestFrame().select(frames(3), scorer, text)
    assert "CLIP reads the first 77" in output["ui"]["text"][0]


def test_single_file_with_config_beside_it_scores_like_the_folder(scorer, linked, tmp_path_factory):
    """model.safetensors as one file + <name>.json; tokenizer and preprocessing fall back to the defaults."""
    from aid_harness.models import ensure_clip_model

    folder = ensure_clip_model()
    target = tmp_path_factory.mktemp("single") / "aid-random-clip-tiny-single.safetensors"
    shutil.copyfile(folder / "model.safetensors", target)
    shutil.copyfile(folder / "config.json", target.with_suffix(".json"))
    name = linked(target)
    linked(target.with_suffix(".json"))
    options = AIDCLIPScorerLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert name in options and target.with_suffix(".json").name not in options
    single = AIDCLIPScorerLoader().load(name)[0]
    assert single.source.startswith("config ") and single.source.endswith("aid-random-clip-tiny-single.json")
    images = frames(4)
    assert torch.allclose(single.score(images, TEXT), scorer.score(images, TEXT), atol=1e-5)


def test_single_file_without_config_is_read_as_an_openai_clip_layout(comfy, linked, tmp_path_factory):
    """Head counts and activation follow OpenAI CLIP (64-wide heads, quick_gelu): scores equal the original's."""
    import transformers
    from safetensors.torch import save_file

    config = transformers.CLIPConfig(
        text_config={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 77, "hidden_act": "quick_gelu", "vocab_size": 49408,
                     "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407, "projection_dim": 32},
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 1,
                       "image_size": 64, "patch_size": 16, "hidden_act": "quick_gelu", "projection_dim": 32},
        projection_dim=32)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    target = tmp_path_factory.mktemp("openai") / "aid-random-clip-openai-layout.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target))
    inferred = infer_clip_config({k: tuple(v.shape) for k, v in model.state_dict().items()})
    for tower in ("text_config", "vision_config"):
        for key, value in inferred[tower].items():
            assert getattr(getattr(config, tower), key) == value, (tower, key)

    single = AIDCLIPScorerLoader().load(linked(target))[0]
    assert "OpenAI CLIP layout" in single.source
    assert "OpenAI CLIP layout" in AIDBestFrame().select(frames(3), single, TEXT)["ui"]["text"][0]
    images = frames(3)
    bundled = str(comfy["root"] / "comfy" / "sd1_tokenizer")
    assert torch.allclose(single.score(images, TEXT), reference_logits(model, images, TEXT, bundled), atol=1e-4)


def test_missing_model_says_where_to_put_it(comfy_base, runner):
    folder = str(comfy_base / "models" / MODEL_FOLDER)
    message = AIDCLIPScorerLoader.VALIDATE_INPUTS("clip-vit-large-patch14")
    assert message.startswith("AID CLIP Scorer Loader: input 'model_name': 'clip-vit-large-patch14' is not in the "
                              "'clip_scoring' model folder. Fix: put a transformers CLIPModel folder")
    assert folder in message
    with pytest.raises(AIDInputError, match="Fix: put a transformers CLIPModel folder .*config.json"):
        AIDCLIPScorerLoader().load("clip-vit-large-patch14")
    # the same words reach the user through ComfyUI's validation
    result = runner.run({"1": {"class_type": "AIDCLIPScorerLoader", "inputs": {"model_name": "missing"}},
                         "2": {"class_type": "AIDBestFrame", "inputs": {"frames": ["3", 0], "scorer": ["1", 0],
                                                                        "text": TEXT}},
                         "3": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 3,
                                                                      "color": 0}},
                         "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}})
    assert not result.success
    assert folder in json.dumps(result.error)


def _write_folder(path, config, weights=True):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    if weights:
        (path / "pytorch_model.bin").write_bytes(b"")
    return path


@pytest.mark.parametrize("case", ["vision only", "pickled weights", "openclip file", "corrupt file"])
def test_unusable_model_files_are_refused_with_a_fix(case, linked, tmp_path_factory):
    from safetensors.torch import save_file

    base = tmp_path_factory.mktemp("bad")
    if case == "vision only":
        path = _write_folder(base / "aid-bad-vision-only", {"model_type": "clip_vision_model"})
        (path / "model.safetensors").write_bytes(b"")
        expected = "describes a 'clip_vision_model' model.*Fix: use a transformers CLIPModel"
    elif case == "pickled weights":
        path = _write_folder(base / "aid-bad-bin-only", {"model_type": "clip"})
        expected = "has no .safetensors weights.*Fix: save the model with save_pretrained"
    elif case == "corrupt file":
        path = base / "aid-bad-corrupt.safetensors"
        path.write_bytes(b"not a safetensors file")
        expected = "could not be loaded .*Fix: check that the files are a complete transformers CLIPModel"
    else:
        path = base / "aid-bad-openclip.safetensors"
        save_file({"visual.conv1.weight": torch.zeros(8, 3, 4, 4), "positional_embedding": torch.zeros(77, 8)},
                  str(path))
        expected = "no tensor 'text_model.embeddings.token_embedding.weight'.*Fix: use a transformers CLIPModel"
    with pytest.raises(AIDInputError, match="AID CLIP Scorer Loader: input 'model_name': .*" + expected):
        AIDCLIPScorerLoader().load(linked(path))


def test_best_frame_input_errors(scorer):
    with pytest.raises(AIDInputError, match="AID Best Frame: input 'text': the text is empty"):
        AIDBestFrame().select(frames(3), scorer, "  ")
    with pytest.raises(AIDInputError, match="AID Best Frame: input 'frames': the batch has 2 frames, fewer than 3"):
        AIDBestFrame().select(frames(2), scorer, TEXT, exclude_endpoints=True)


def test_load_clip_scorer_keeps_the_model_on_the_offload_device(clip_scorer_name):
    import comfy.model_management as mm
    from aid_harness.models import ensure_clip_model

    loaded = load_clip_scorer(str(ensure_clip_model()))
    assert loaded.patcher.offload_device == mm.text_encoder_offload_device()
    assert loaded.model.dtype == torch.float32  # CPU: full precision
    assert loaded.preprocessing == {"size": 224, "crop": (224, 224), "mean": pytest.approx(
        (0.48145466, 0.4578275, 0.40821073)), "std": pytest.approx((0.26862954, 0.26130258, 0.27577711))}
