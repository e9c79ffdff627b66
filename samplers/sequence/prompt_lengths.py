"""Prompts of one token count, padded by their own text encoder (what joint attention needs).

Repeating a context to a common length leaves UNet cross-attention unchanged but not the joint
attention of a diffusion transformer, so Flux, SD3 and Qwen-Image sequences need prompts of equal
length. ComfyUI's tokenizers take a per-encoder `<encoder>_min_length` option (core T5TokenizerOptions
sets it for T5): tokenizing every prompt with the longest one's length as its minimum pads the shorter
ones with the encoder's own padding token, exactly as the encoder pads any short prompt (T5 pads to
256 on Flux that way). Encoders that split prompts into 77-token chunks (CLIP) cannot be padded like
that; where their tokens reach the context (SD3: CLIP tokens, then T5 tokens) prompts of different
chunk counts keep different lengths and are refused. Flux uses only CLIP-L's pooled vector, so there
its chunks do not matter.
"""
from __future__ import annotations


class PromptLengthError(ValueError):
    """The prompts cannot be given one length by their encoder's padding (different CLIP chunk counts in the context)."""


def _length(batches) -> int:
    return sum(len(batch) for batch in batches)


def equal_length_tokens(clip, texts):
    """Tokens of each text (clip.tokenize output), padded per unchunked encoder to the longest text's count.

    Encoders that chunk (several token batches for a long prompt, CLIP) are left as they are.
    """
    tokens = [clip.tokenize(text) for text in texts]
    options = {}
    for key in tokens[0]:
        lengths = [_length(tok[key]) for tok in tokens]
        if len(set(lengths)) == 1 or any(len(tok[key]) != 1 for tok in tokens):
            continue
        options[f"{key}_min_length"] = max(lengths)
    if not options:
        return tokens
    return [clip.tokenize(text, tokenizer_options=options) for text in texts]


def encode_equal_length(clip, texts) -> list:
    """CONDITIONING of each text, all with one token count; PromptLengthError when that cannot be done."""
    tokens = equal_length_tokens(clip, texts)
    conditionings = [clip.encode_from_tokens_scheduled(tok) for tok in tokens]
    counts = {int(context.shape[1]) for conditioning in conditionings for context, _ in conditioning}
    if len(counts) > 1:
        chunked = [key for key in tokens[0] if any(len(tok[key]) > 1 for tok in tokens)]
        why = (f" Its chunking tokenizers ({', '.join(chunked)}) split long prompts into 77-token chunks, and the "
               f"prompts span different numbers of chunks." if chunked else "")
        raise PromptLengthError(f"the encoded prompts still have different lengths "
                                f"({', '.join(map(str, sorted(counts)))} tokens).{why}")
    return conditionings
