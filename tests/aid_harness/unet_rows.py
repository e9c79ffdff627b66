"""Count what sampling costs in UNet rows: a model wrapper that records the batch of every UNet call."""
from __future__ import annotations


class UnetRowCounter:
    """A model_function_wrapper that passes every call through and records its number of rows."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, apply_model, args):
        self.calls.append(int(args["input"].shape[0]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    def __deepcopy__(self, memo):  # ModelPatcher.clone deep-copies model_options: keep counting here
        return self

    @property
    def rows(self) -> int:
        return sum(self.calls)


def counting_model(model):
    """(a clone of `model` whose UNet calls are counted, the counter); patches made from the clone keep it."""
    clone = model.clone()
    counter = UnetRowCounter()
    clone.set_model_unet_function_wrapper(counter)
    return clone, counter
