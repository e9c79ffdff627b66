"""Smooth schedules: choosing coefficients for even perceptual steps (auto beta, dynamic selection) and the
batched sampling rounds those searches run."""
