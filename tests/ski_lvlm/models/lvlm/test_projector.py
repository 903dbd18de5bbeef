"""Projectors: the standardiser and the whole-clip summary tokens."""

import torch

from ski_lvlm.models.lvlm.projector import FeatureStandardizer, SummaryProjector, build_projector


def test_standardizer_fits_mean_and_std_and_is_part_of_the_state_dict():
    x = torch.randn(50, 7, 6) * 3 + 2
    std = FeatureStandardizer(6)
    std.fit(x)
    y = std(x.reshape(-1, 6))
    torch.testing.assert_close(y.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0), torch.ones(6), atol=1e-5, rtol=0)
    proj = build_projector("std_linear", 6, 4)
    assert set(proj.state_dict()) == {"0.mean", "0.std", "1.weight", "1.bias"}


def test_summary_tokens_see_the_whole_clip_and_per_token_rows_do_not():
    torch.manual_seed(0)
    proj = SummaryProjector(build_projector("std_linear", 6, 8), num_in=5, num_summary=3, in_dim=6, out_dim=8)
    x = torch.randn(2, 5, 6)
    out = proj(x)
    assert out.shape == (2, 5 + 3, 8)
    x2 = x.clone()
    x2[:, 4] += 1.0  # change the last token only
    out2 = proj(x2)
    torch.testing.assert_close(out[:, :4], out2[:, :4])  # the other per-token rows are unchanged
    assert (out[:, 5:] - out2[:, 5:]).abs().amax(dim=-1).min() > 0  # every summary row moved
