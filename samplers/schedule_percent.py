"""Where a sigma lies on a model's whole denoising schedule: the schedule percent p in [0, 1].

p is ComfyUI's start_percent / end_percent measure (0 = the start of denoising, 1 = its end), so a value
that follows p is the same at the same sigma however the run is cut: KSamplerAdvanced's start/end steps
and SplitSigmas hand a sampler only part of the sigmas, and the steps of that part are not the steps of
the schedule. The mapping is the inverse of the model's own model_sampling.percent_to_sigma (which is
non-increasing in p for every model sampling ComfyUI has: discrete, EDM, flow, Flux, ...), found by
bisection and cached per sigma.
"""
from __future__ import annotations

BISECTION_STEPS = 60  # 2^-60: below float64 resolution of p


class SchedulePercent:
    """sigma -> the schedule percent of a model (`model_sampling`: model.get_model_object('model_sampling'))."""

    def __init__(self, model_sampling):
        self.model_sampling = model_sampling
        self._cache: dict[float, float] = {}

    def __deepcopy__(self, memo):
        return self  # holds the model's sampling object, which a copy must share

    def __call__(self, sigma: float) -> float:
        sigma = float(sigma)
        if sigma not in self._cache:
            self._cache[sigma] = self._invert(sigma)
        return self._cache[sigma]

    def _invert(self, sigma: float) -> float:
        """The smallest p whose percent_to_sigma(p) <= sigma (0 above the schedule's start, 1 at sigma 0)."""
        to_sigma = self.model_sampling.percent_to_sigma
        low, high = 0.0, 1.0
        for _ in range(BISECTION_STEPS):
            middle = 0.5 * (low + high)
            if float(to_sigma(middle)) > sigma:
                low = middle
            else:
                high = middle
        return high
