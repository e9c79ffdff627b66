"""Test-only ComfyUI nodes that make a server's work observable from outside its process.

The harness links this folder into a test server's custom_nodes (tests/aid_harness/distributed.py);
it never ships with the pack. Both nodes write into the server's output folder:
- AID Test UNet Rows (MODEL -> MODEL): a model whose UNet calls append their batch size, one line
  per call, to `aid_unet_rows.txt`: the rows this server sampled.
- AID Test Save Tensor (IMAGE): the exact float32 images as `<name>.pt` (a PNG would round them).
"""
from __future__ import annotations

import os

ROWS_FILE = "aid_unet_rows.txt"


def _output_path(name: str) -> str:
    import folder_paths

    return os.path.join(folder_paths.get_output_directory(), name)


class AIDTestUnetRows:
    CATEGORY = "_for_testing/aid"  # not "AID...": the pack's fuzz test covers every node under AID
    FUNCTION = "count"
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    def count(self, model):
        path = _output_path(ROWS_FILE)

        def record_rows(apply_model, args):  # a plain function: ModelPatcher.clone's deepcopy keeps it
            with open(path, "a") as log:
                log.write(f"{int(args['input'].shape[0])}\n")
            return apply_model(args["input"], args["timestep"], **args["c"])

        counted = model.clone()
        counted.set_model_unet_function_wrapper(record_rows)
        return (counted,)


class AIDTestSaveTensor:
    CATEGORY = "_for_testing/aid"
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "name": ("STRING", {"default": "images"})}}

    def save(self, images, name):
        import torch

        torch.save(images.detach().cpu().float().clone(), _output_path(f"{name}.pt"))
        return {}


NODE_CLASS_MAPPINGS = {"AIDTestUnetRows": AIDTestUnetRows, "AIDTestSaveTensor": AIDTestSaveTensor}
NODE_DISPLAY_NAME_MAPPINGS = {"AIDTestUnetRows": "AID Test UNet Rows", "AIDTestSaveTensor": "AID Test Save Tensor"}
