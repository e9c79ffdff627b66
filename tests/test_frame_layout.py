"""Frame layouts: rows between any two keys of a batch, keys shared by their segments (attention/layout.py)."""
import pytest
import torch

from aid_pack.attention.branches import POSITIVE_UUIDS
from aid_pack.attention.layout import FrameLayout
from aid_pack.attention.patch import InterpolationPatch, InterpolationSettings

HEADS, DIM = 2, 8
# keys K0 K1 K2 with two frames between K0 and K1 and one between K1 and K2; a closing frame K2 -> K0
THREE_KEYS = FrameLayout(((0, 1, 0.0), (0, 1, 0.3), (0, 1, 0.6), (0, 1, 1.0), (1, 2, 0.5), (1, 2, 1.0),
                          (2, 0, 0.5)))


def test_layout_rows_keys_and_segments():
    assert THREE_KEYS.key_rows() == {0: 0, 1: 3, 2: 5}
    assert THREE_KEYS.segments() == {(0, 3): [(1, 0.3), (2, 0.6)], (3, 5): [(4, 0.5)], (5, 0): [(6, 0.5)]}
    assert [THREE_KEYS.key_of(r) for r in range(7)] == [0, None, None, 1, None, 2, None]
    two = FrameLayout.between((0.0, 0.25, 1.0))
    assert two.rows == ((0, 1, 0.0), (0, 1, 0.25), (0, 1, 1.0)) and two.segments() == {(0, 2): [(1, 0.25)]}
    assert THREE_KEYS.select([0, 4, 3, 5]).segments() == {(2, 3): [(1, 0.5)]}


@pytest.mark.parametrize("rows,message", [
    (((0, 1, 0.5),), r"key\(s\) \[0, 1\] have no row"),
    (((0, 1, 0.0), (0, 1, 1.5)), "outside 0..1"),
    ((), "at least one row"),
])
def test_bad_layouts_are_refused(rows, message):
    with pytest.raises(ValueError, match=message):
        FrameLayout(rows)


def sdpa(q, k, v):
    split = lambda x: x.reshape(x.shape[0], x.shape[1], HEADS, DIM).transpose(1, 2)  # noqa: E731
    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], HEADS * DIM)


def options(rows, chunks=(1, 0)):
    uuids = [f"entry-{c}" for c in range(len(chunks))]
    return {"n_heads": HEADS, "dim_head": DIM, "attn_precision": None, "cond_or_uncond": list(chunks),
            "sigmas": torch.tensor([5.0] * rows), "uuids": uuids,
            POSITIVE_UUIDS: frozenset(u for u, kind in zip(uuids, chunks) if kind == 0)}


@pytest.mark.parametrize("mode", ["fused outer", "fused inner", "outer", "inner"])
@pytest.mark.parametrize("chained", [False, True])
def test_each_segment_is_the_two_endpoint_interpolation_of_its_keys(comfy, mode, chained):
    """The rows of a three-key batch come out as the two-key runs [K_a, frames..., K_b] of their segments."""
    g = torch.Generator().manual_seed(4)
    frames = THREE_KEYS.frames
    q, k, v = (torch.randn(2 * frames, 6, HEADS * DIM, generator=g) for _ in range(3))
    previous = (lambda q_, k_, v_, eo: sdpa(q_, k_, v_)) if chained else None  # noqa: E731
    settings = InterpolationSettings(THREE_KEYS.coefficients, mode=mode, layout=THREE_KEYS)
    out = InterpolationPatch(settings, previous)(q, k, v, options(frames))
    positive = slice(frames, 2 * frames)
    qp, kp, vp, got = q[positive], k[positive], v[positive], out[positive]
    for (row_a, row_b), members in THREE_KEYS.segments().items():
        rows = [row_a] + [row for row, _ in members] + [row_b]
        two_key = InterpolationSettings((0.0, *[t for _, t in members], 1.0), mode=mode)
        alone = InterpolationPatch(two_key, previous)(qp[rows], kp[rows], vp[rows], options(len(rows), (0,)))
        assert torch.allclose(got[rows], alone, atol=1e-5), (row_a, row_b)
    assert torch.allclose(out[:frames], sdpa(q[:frames], k[:frames], v[:frames]), atol=1e-5), "negative chunk"
