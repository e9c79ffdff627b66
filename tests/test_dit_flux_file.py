"""Flux loaded from a diffusion-model file in the real key layout through the core UNETLoader (issue 12).

The file (aid_harness/dit_models.py) holds the released flux1-dev key names and shapes at full width
(3072: detection fixes 24 heads of 128) with one double and one single block; comfy/model_detection.py
reads depth, channels and the 4096-wide context from it. CONDITIONING is built at that width (T5-XXL
is too big to build). Guidance-distilled: cfg 1, guidance from the CONDITIONING (3.5 by default).
The AID properties hold as on the tiny in-process models.
"""
import pytest
import torch

from aid_harness import dit_models
from aid_harness.compare import close
from aid_pack.nodes.apply import ApplyAID
from aid_pack.nodes.conditioning import AIDConditioning
from aid_pack.nodes.latent import AIDLatent
from test_dit_models import SIZE, Dit, schedule

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flux_file(comfy, link_model):
    name = link_model("diffusion_models", dit_models.ensure_flux_diffusion_model())
    model = comfy["nodes"].UNETLoader().load_unet(name, "default")[0]
    return Dit(comfy, "flux", model=model, width=4096, steps=2)


@pytest.fixture(scope="module")
def frames(flux_file):
    return flux_file.aid(schedule(4))


def test_detection_reads_the_flux_layout(flux_file):
    diffusion_model = flux_file.model.model.diffusion_model
    assert type(flux_file.model.model).__name__ == "Flux"
    assert type(flux_file.model.model.model_config).__name__ == "Flux"  # guidance-distilled (dev)
    assert (diffusion_model.hidden_size, len(diffusion_model.double_blocks), len(diffusion_model.single_blocks),
            diffusion_model.params.context_in_dim) == (3072, 1, 1, 4096)


def test_aid_properties_on_the_loaded_flux(flux_file, frames):
    plain_a, plain_b = flux_file.plain(flux_file.a), flux_file.plain(flux_file.b)
    assert close(frames[0], plain_a[0]) and close(frames[-1], plain_b[0])
    alone = flux_file.aid(schedule(coefficients=(0.0, 2 / 3, 1.0)))
    assert close(frames[2], alone[1]), "batched equals the three-frame run"
    chunked = flux_file.aid(schedule(4), max_frames_per_batch=3)
    assert all(close(chunked[f], frames[f]) for f in range(4)), "chunked equals unchunked"


def test_inactive_equals_tei_and_the_input_model_is_unchanged(flux_file, frames):
    sched = schedule(4)
    before = flux_file.plain(flux_file.a)
    patched = ApplyAID().apply(flux_file.model, sched, "fused outer", "self and cross", 0.3, 0.3)[0]
    positive = AIDConditioning().build(flux_file.a, flux_file.b, sched)[0]
    latent = AIDLatent().build(SIZE, SIZE, sched, seed=0)[0]
    off = flux_file.plain(positive, model=patched, latent=latent)
    tei = flux_file.plain(positive, latent=latent)
    assert all(close(off[f], tei[f]) for f in range(4))
    assert not close(frames[1], tei[1], rel=1e-2), "interpolated attention changes the interior frames"
    assert torch.equal(flux_file.plain(flux_file.a), before)
    assert "optimized_attention_override" not in flux_file.model.model_options.get("transformer_options", {})
