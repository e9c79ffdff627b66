"""fusion = lse on the real host: the same frames as concat (issue 10, item 7), through torch's fused kernel."""
import pytest

from aid_harness.compare import close
from test_aid_core import aid_sample, schedule


@pytest.mark.parametrize("mode", ["fused outer", "fused inner"])
def test_lse_fusion_gives_the_frames_of_concat_fusion(mode, sd15_tiny, prompts):
    concat = aid_sample(sd15_tiny, prompts, schedule(4), mode=mode, fusion="concat")
    lse = aid_sample(sd15_tiny, prompts, schedule(4), mode=mode, fusion="lse")
    assert close(lse, concat)
    assert not close(lse[1], lse[0], rel=1e-2)  # interior frames are interpolated, not copies
