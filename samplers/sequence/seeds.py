"""The seed of a sequence run: an int that also carries every key's seed (a leaf: noise and step noise read it)."""
from __future__ import annotations


class SequenceSeed(int):
    """A sampling seed (the first key's) that also carries every key's seed for the step noise.

    It is an int, so ComfyUI passes it through unchanged as the `seed` of a sampling run
    (AID Latent's NOISE.seed for SamplerCustomAdvanced, AID Sampler's runs). `key_seeds[k]` is key
    k's seed: (seed A, seed B) for a two-endpoint sequence.
    """

    def __new__(cls, seed_a: int, seed_b: int | None = None, key_seeds=None):
        value = super().__new__(cls, seed_a)
        value.key_seeds = tuple(int(s) for s in key_seeds) if key_seeds is not None else (
            int(seed_a), int(seed_a if seed_b is None else seed_b))
        return value


def key_seeds_of(seed) -> tuple[int, ...]:
    """Every key's seed for a run's `seed`: a SequenceSeed's own, else the one seed for every key."""
    return getattr(seed, "key_seeds", None) or (int(seed),)
