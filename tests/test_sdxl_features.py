"""Features beyond plain sequences on the SDXL family (issue 22's feature x model table): a tiny random
SDXL (model_base.SDXL) on the real host, with hand-made CONDITIONING at its widths (2048 context, 1280
pooled). Editing holds frame 0 on the inverted latent, a share-split sequence puts back together into
the single run, and regional interpolation with a whole-image map is plain AID while a half-image map
changes the frames between and keeps endpoint A."""
import pytest
import torch

from aid_harness.compare import close
from aid_harness.models import sdxl_conditioning, tiny_sdxl_model
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.editing import AIDInvertImage
from aid_pack.nodes.latent import AIDLatent
from aid_pack.nodes.region_sampler import AIDRegionalInterpolation
from aid_pack.nodes.regions import SpatialTemporalRegion
from aid_pack.nodes.shares import AIDSequenceShare
from test_dit_models import SIZE, STEPS, Dit, schedule


class Sdxl(Dit):
    """The tiny SDXL with the same plain / AID runs as the DiT tests (cfg 4, scheduler simple)."""

    def __init__(self, comfy):
        self.nodes, self.family, self.model, self.cfg, self.steps = comfy["nodes"], "sdxl", tiny_sdxl_model(), 4.0, \
            STEPS
        self.a, self.b, self.negative = sdxl_conditioning(1), sdxl_conditioning(2), sdxl_conditioning(3)


@pytest.fixture(scope="module")
def sdxl(comfy):
    return Sdxl(comfy)


@pytest.fixture(scope="module")
def four_frames(sdxl):
    return sdxl.aid(schedule(4))


def test_editing_holds_frame_zero_on_the_picture_at_any_cfg(sdxl):
    latent = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(5)) * 0.5
    inversion = AIDInvertImage().invert(sdxl.model, sdxl.a, sdxl.negative, STEPS, 1.0, "simple", 1.0, 0,
                                        latent={"samples": latent})[0]
    for cfg in (1.0, sdxl.cfg):
        frames = sdxl.aid(schedule(4), inversion=inversion, cfg=cfg)
        assert close(frames[0], latent[0], rel=1e-4), f"cfg {cfg}"
        assert not close(frames[1], latent[0], rel=1e-2)


def test_shares_put_together_equal_one_run(sdxl, four_frames):
    parts = [sdxl.aid(schedule(4), share=AIDSequenceShare().select(index, 2)[0]) for index in range(2)]
    gathered = torch.cat(parts)
    for frame in range(4):
        assert close(gathered[frame], four_frames[frame]), f"frame {frame}"


def test_regional_interpolation_whole_map_is_plain_aid_and_a_half_map_keeps_a(sdxl):
    sched = schedule(4)
    positive = AIDConditioning().build(sdxl.a, sdxl.b, sched)[0]
    latent = AIDLatent().build(SIZE, SIZE, sched, seed=0)[0]
    aid = ApplyAID().apply(sdxl.model, sched, "fused outer", "self and cross", 0.0, 0.6)[0]

    def run(model):
        return sdxl.nodes.common_ksampler(model, 7, STEPS, sdxl.cfg, "euler", "simple", positive, sdxl.negative,
                                          latent)[0]["samples"]

    plain_aid = run(aid)
    everywhere = SpatialTemporalRegion().add("all", "fractions", 0, 0, 1, 1)["result"][0]
    frames = run(AIDRegionalInterpolation().apply(aid, everywhere)[0])
    for frame in range(4):
        assert close(frames[frame], plain_aid[frame]), frame
    left = SpatialTemporalRegion().add("left", "fractions", 0, 0, 0.5, 1)["result"][0]
    halved = run(AIDRegionalInterpolation().apply(aid, left)[0])
    assert close(halved[0], plain_aid[0]), "frame 0 is plain A"
    assert not close(halved[2], plain_aid[2], rel=1e-2)
