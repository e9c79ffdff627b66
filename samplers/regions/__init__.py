"""Spatial-temporal regions: the region list, per-step weights, the patched run, the weight optimiser,
Auto Layout's prompt reader, and AID Regional Interpolation."""
