"""How tests compare sampled latents.

Frames are compared relative to their largest magnitude. Batching changes only float
rounding (other kernel blocking per batch size), which stays near 1e-6 of the scale after a
few steps; 1e-4 leaves room without hiding a wrong frame, which differs by 1e-1 or more.
"""
REL_TOL = 1e-4


def close(a, b, rel: float = REL_TOL) -> bool:
    """True when a and b differ by at most `rel` times the larger of their largest magnitudes."""
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-6)
    return float((a - b).abs().max()) <= rel * scale
