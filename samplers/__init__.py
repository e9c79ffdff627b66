"""Driving denoising, one sub-package per feature; a feature imports only `sequence` and the floors below.

- sequence/: the batched two-endpoint run every feature stands on (schedule, seeds, noise, step noise,
  conditioning, branches, frame sizes and guidance, prompt lengths, shares, run, sampler).
- keyframes/: keyframe travels K_0 -> K_1 -> ... (timeline text, easing, plan, sampling).
- smooth/: smooth schedules (coefficient selection and its sampling rounds).
- editing/: editing a real image (inversion, the model fingerprint an inversion is checked against) and morphing
  two photos (both endpoints held).
- regions/: spatial-temporal regions (layout, weights, run, optimiser, prompt layout, regional interpolation).
"""
