"""AID Text Encode (equal length): prompts padded by their own text encoder to one token count (issue 12.2).

Joint attention is not invariant to repeated text tokens, so DiT prompts of different lengths cannot be
repeated to a common length as on UNets. ComfyUI's tokenizers pad with their own padding token up to
`<encoder>_min_length` (the option core T5TokenizerOptions sets); the node sets it to the longest
prompt's length. Checked with ComfyUI's real tokenizers (Qwen-Image's never pads a prompt; CLIP's
splits long prompts into 77-token chunks) and, end to end, with Flux's real tokenizer and CLIP-L on a
4096-wide one-block T5 (aid_harness/dit_models.py; T5-XXL itself is too big to build).
"""
import pytest
import torch

from aid_harness import dit_models
from aid_pack.errors import AIDInputError
from aid_pack.nodes.text_encode import AIDTextEncodeEqualLength
from aid_pack.samplers.sequence.prompt_lengths import equal_length_tokens

LONG = ", ".join(["a small brown dog running across a wide field of green summer grass"] * 25)


def tokenizer_only_clip(tokenizer):
    """ComfyUI's CLIP object around a real tokenizer, without a text model (tokenize works, encode does not)."""
    import comfy.sd

    clip = comfy.sd.CLIP(no_init=True)
    clip.tokenizer, clip.tokenizer_options = tokenizer, {}
    return clip


def test_qwen_image_prompts_are_padded_with_the_encoders_pad_token():
    from comfy.text_encoders.qwen_image import QwenImageTokenizer

    clip = tokenizer_only_clip(QwenImageTokenizer())
    short, long = "a red fox", "a white owl sitting on a snowy branch in the morning light"
    plain = [clip.tokenize(text)["qwen25_7b"][0] for text in (short, long)]
    assert len(plain[0]) < len(plain[1]), "Qwen-Image's tokenizer does not pad"
    padded = [tok["qwen25_7b"][0] for tok in equal_length_tokens(clip, [short, long])]
    assert len(padded[0]) == len(padded[1]) == len(plain[1])
    assert padded[1] == plain[1] and padded[0][:len(plain[0])] == plain[0]
    assert {token for token, _ in padded[0][len(plain[0]):]} == {151643}  # <|endoftext|>, its pad token


def test_chunking_encoders_are_left_as_they_are():
    """CLIP splits a long prompt into 77-token chunks: no min_length can pad a chunk count."""
    from comfy.sd1_clip import SD1Tokenizer

    clip = tokenizer_only_clip(SD1Tokenizer())
    texts = ["a dog", LONG]
    assert equal_length_tokens(clip, texts) == [clip.tokenize(text) for text in texts]


@pytest.fixture(scope="module")
def flux_clip(link_model):
    """Flux's text encoders as DualCLIPLoader loads them (CLIP-L + a one-block, 4096-wide T5)."""
    import comfy.sd

    paths = [dit_models.ensure_clip_l(), dit_models.ensure_tiny_t5()]
    for path in paths:
        link_model("text_encoders", path)
    return comfy.sd.load_clip(ckpt_paths=[str(p) for p in paths], clip_type=comfy.sd.CLIPType.FLUX,
                              model_options={"t5xxl_model_config": dit_models.TINY_T5_CONFIG})


@pytest.mark.slow
def test_flux_prompts_over_256_t5_tokens_are_padded_like_t5_pads(comfy, flux_clip):
    """The short prompt comes out exactly as CLIP Text Encode makes it under T5TokenizerOptions(min_length=N)."""
    import nodes

    encode = nodes.CLIPTextEncode().encode
    long = encode(flux_clip, LONG)[0]
    tokens = long[0][0].shape[1]
    assert tokens > 256 and encode(flux_clip, "a red fox")[0][0][0].shape[1] == 256
    # CLIP-L sees LONG as several chunks, but Flux takes only its pooled vector: the contexts still match
    a, b, guidance = AIDTextEncodeEqualLength().encode(flux_clip, "a red fox", LONG, "a fox turning into a dog")
    assert a[0][0].shape[1] == b[0][0].shape[1] == guidance.conditioning[0][0].shape[1] == tokens
    assert torch.equal(b[0][0], long[0][0])
    padded_clip = flux_clip.clone()
    padded_clip.set_tokenizer_option("t5xxl_min_length", tokens)
    reference = encode(padded_clip, "a red fox")[0]
    assert torch.equal(a[0][0], reference[0][0]) and torch.equal(a[0][1]["pooled_output"],
                                                                 reference[0][1]["pooled_output"])
    assert AIDTextEncodeEqualLength().encode(flux_clip, "a red fox", "an owl")[2] is None


@pytest.mark.slow
def test_sd3_prompts_of_different_clip_chunk_counts_are_refused(comfy, link_model):
    """SD3's context is CLIP tokens then T5 tokens: a prompt over 75 CLIP tokens makes a longer context."""
    import comfy.sd

    clip = comfy.sd.load_clip(ckpt_paths=[str(dit_models.ensure_clip_l())], clip_type=comfy.sd.CLIPType.SD3)
    with pytest.raises(AIDInputError, match=r"AID Text Encode \(equal length\): input 'text_b': the encoded prompts "
                                            r"still have different lengths \(77, \d+ tokens\)\. Its chunking tokenizers "
                                            r"\(g, l\) split long prompts into 77-token chunks.*Fix: shorten"):
        AIDTextEncodeEqualLength().encode(clip, "a dog", LONG)


def test_missing_text_encoder_is_named():
    with pytest.raises(AIDInputError, match="input 'clip': no text encoder"):
        AIDTextEncodeEqualLength().encode(None, "a dog", "a cat")


class UnusedClip:
    """A CLIP socket value that fails the test if anything is encoded with it."""

    def tokenize(self, *args, **kwargs):
        raise AssertionError("the prompt should have been refused before encoding")

    encode_from_tokens = tokenize


@pytest.mark.parametrize("name", ["text_a", "text_b", "guidance_text"])
def test_megabyte_prompts_are_refused_before_encoding(name):
    """The server fuzz test's 1 MB prompt (some 250,000 tokens) kept the host encoding for minutes."""
    texts = {"text_a": "a dog", "text_b": "a cat", "guidance_text": "", name: "x" * (1 << 20)}
    with pytest.raises(AIDInputError, match=rf"AID Text Encode \(equal length\): input '{name}': the prompt is "
                                            r"1,048,576 characters long.*Fix: shorten the prompt"):
        AIDTextEncodeEqualLength().encode(UnusedClip(), **texts)
