"""Gradients through a ComfyUI sampling run, the VAE decode and the CLIP scorer (the gradient optimiser).

ComfyUI runs nodes under torch.inference_mode and its k-diffusion samplers under torch.no_grad. As core's
LoRA training node (comfy_extras/nodes_train.py) does it, the optimiser leaves inference mode
(torch.inference_mode(False) + enable_grad), makes the weights it computes with normal tensors, runs
the sampler's own function without its no_grad decorator, and checkpoints to bound memory:
- tensors made under inference mode cannot be saved for backward; the loaded weights of the UNet, the
  VAE and the CLIP scorer are therefore replaced, once, by normal copies of themselves (same values,
  same device: nothing changes for later inference, and memory does not grow);
- every UNet call is checkpointed (a model_function_wrapper on the optimiser's own clone): only the
  inputs of each step are kept, the call is recomputed during the backward pass;
- the VAE decoder's blocks are checkpointed while the decode runs (core's technique of wrapping module
  forwards, restored afterwards).
"""
from __future__ import annotations

import contextlib

import torch
import torch.utils.checkpoint


@contextlib.contextmanager
def gradients():
    """Autograd on, even inside a node ComfyUI runs under inference_mode."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def normal_tensors_(module: torch.nn.Module) -> int:
    """Replace parameters and buffers that are inference tensors by normal copies (in place); returns how many."""
    replaced = 0
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, parameter in list(sub._parameters.items()):
                if parameter is not None and parameter.is_inference():
                    sub._parameters[name] = torch.nn.Parameter(parameter.clone(), requires_grad=False)
                    replaced += 1
            for name, buffer in list(sub._buffers.items()):
                if buffer is not None and buffer.is_inference():
                    sub._buffers[name] = buffer.clone()
                    replaced += 1
    return replaced


def normal_copy(value):
    """A copy of a CONDITIONING (or any nest of lists, tuples, dicts) with its tensors as normal tensors."""
    if isinstance(value, torch.Tensor):
        with torch.inference_mode(False):
            return value.clone()
    if isinstance(value, list):
        return [normal_copy(item) for item in value]
    if isinstance(value, tuple):
        return tuple(normal_copy(item) for item in value)
    if isinstance(value, dict):
        return {key: normal_copy(item) for key, item in value.items()}
    return value


class CheckpointedModelCall:
    """model_function_wrapper that checkpoints each UNet call while gradients are on (chains to a previous one)."""

    def __init__(self, previous=None):
        self.previous = previous

    def __deepcopy__(self, memo):
        return self

    def __call__(self, apply_model, args):
        def run(x, timestep):
            call = dict(args, input=x, timestep=timestep)
            if self.previous is not None:
                return self.previous(apply_model, call)
            return apply_model(x, timestep, **call["c"])

        if not torch.is_grad_enabled():
            return run(args["input"], args["timestep"])
        return torch.utils.checkpoint.checkpoint(run, args["input"], args["timestep"], use_reentrant=False)


class SamplerNotDifferentiable(ValueError):
    """The chosen sampler's function cannot run with gradients."""


def differentiable_sampler(sampler_name: str):
    """A KSAMPLER running `sampler_name`'s k-diffusion function with gradients (without its no_grad decorator)."""
    import comfy.samplers

    base = comfy.samplers.sampler_object(sampler_name)
    function = getattr(base, "sampler_function", None)
    if function is None:
        raise SamplerNotDifferentiable(f"'{sampler_name}' is not a k-diffusion sampler function.")
    function = getattr(function, "__wrapped__", function)

    class DifferentiableSampler(comfy.samplers.KSAMPLER):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            normal_tensors_(model_wrap.inner_model)  # loaded by now: its weights on the device they run on
            return super().sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
                                  disable_pbar)

    return DifferentiableSampler(function, base.extra_options, base.inpaint_options)


def _own_forward(module: torch.nn.Module) -> bool:
    return type(module).forward is not torch.nn.Module.forward and not isinstance(
        module, (torch.nn.ModuleList, torch.nn.Sequential, torch.nn.ModuleDict))


@contextlib.contextmanager
def checkpointed_blocks(module: torch.nn.Module):
    """Checkpoint the outermost sub-modules with a forward of their own below `module`, for the duration."""
    patched = []

    def visit(parent):
        for child in parent.children():
            wraps_weights = next(child.parameters(), None) is not None
            if _own_forward(child) and "forward" not in vars(child) and wraps_weights:
                original = child.forward
                child.forward = (lambda original: lambda *a, **k: torch.utils.checkpoint.checkpoint(
                    original, *a, use_reentrant=False, **k))(original)
                patched.append(child)
            else:
                visit(child)

    visit(module)
    try:
        yield len(patched)
    finally:
        for child in patched:
            del child.forward


def decode_with_gradients(vae, latent: torch.Tensor) -> torch.Tensor:
    """VAE decode that keeps the graph: latent [B, C, h, w] -> IMAGE-like [B, H, W, 3] in 0..1."""
    import comfy.model_management

    comfy.model_management.load_models_gpu([vae.patcher])
    normal_tensors_(vae.first_stage_model)
    decoder = getattr(vae.first_stage_model, "decoder", None)
    with checkpointed_blocks(decoder) if decoder is not None else contextlib.nullcontext():
        decoded = vae.first_stage_model.decode(latent.to(device=vae.device, dtype=vae.vae_dtype))
    return vae.process_output(decoded.float()).movedim(1, -1)[..., :3]
