"""The one feature-cache key rule: video stem, else skeleton stem, else id."""

from __future__ import annotations

import pytest

from ski_lvlm.data.keys import sample_key


def test_sample_key_fallbacks():
    assert sample_key({"video_path": "a/b/S001C001P001R001A001.mp4", "skeleton_path": "s/other.skeleton",
                       "id": "x"}) == "S001C001P001R001A001"
    assert sample_key({"video_path": None, "skeleton_path": "x/y.skeleton", "id": "x"}) == "y"
    assert sample_key({"video_path": "", "skeleton_path": None, "id": 7}) == "7"
    with pytest.raises(ValueError, match="video path, a skeleton path or an id"):
        sample_key({"video_path": None})
