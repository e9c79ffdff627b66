"""Editing a real image on the diffusion transformers (issue 22's feature x model table): tiny Flux,
SD3.5 and Qwen-Image on the real host. An encoded picture (a random latent in the family's layout)
is inverted under prompt A; the edit sequence from A to B holds frame 0 on it at any cfg, the frames
between change with interpolated attention, and the input MODEL is unchanged."""
import pytest
import torch

from aid_harness.compare import close
from aid_pack.nodes.editing import AIDInvertImage
from aid_pack.samplers.sequence.sampler import empty_sequence_latent
from test_dit_models import FAMILIES, SIZE, STEPS, Dit, schedule


@pytest.fixture(scope="module", params=FAMILIES)
def dit(request, comfy):
    return Dit(comfy, request.param)


@pytest.fixture(scope="module")
def photo(dit):
    """A random latent of one picture in the family's own layout, and its inversion under prompt A."""
    shape = empty_sequence_latent(dit.model, 1, SIZE, SIZE).shape
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(5)) * 0.5
    inversion = AIDInvertImage().invert(dit.model, dit.a, dit.negative, STEPS, 1.0, "simple", 1.0, 0,
                                        latent={"samples": latent})[0]
    return latent, inversion


@pytest.mark.parametrize("cfg", ["family", 1.0])
def test_frame_zero_is_the_picture_and_the_frames_between_are_edited(dit, photo, cfg):
    latent, inversion = photo
    cfg = dit.cfg if cfg == "family" else cfg
    frames = dit.aid(schedule(4), inversion=inversion, cfg=cfg)
    assert close(frames[0], latent[0], rel=1e-4), "frame 0 is the picture"
    plain = dit.aid(schedule(4), inversion=inversion, cfg=cfg, start_percent=0.0, end_percent=0.0)
    assert close(plain[0], latent[0], rel=1e-4)
    assert not close(frames[1], plain[1], rel=1e-3), "interpolated attention reaches the frames between"
    assert not close(frames[1], latent[0], rel=1e-2)


def test_the_input_model_is_unchanged(dit, photo):
    before = dit.plain(dit.a)
    dit.aid(schedule(3), inversion=photo[1])
    assert torch.equal(dit.plain(dit.a), before)
