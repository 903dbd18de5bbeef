"""Shared by the LVLM data tests (map-style set and stream): a dict-backed feature source and a tiny processor."""

from ski_lvlm.models.lvlm import SkiLvlmProcessor
from ski_lvlm.models.lvlm.presets import train_tokenizer

N_V, D_V, N_S, D_S = 5, 8, 3, 4  # video tokens / dims, skeleton steps / dims


class DictFeatures:
    """A feature source over a dict ``key -> {"video", "skeleton"}``; a missing key raises ``KeyError``."""

    def __init__(self, table):
        self.table = table

    def get(self, key):
        if key not in self.table:
            raise KeyError(key)
        return self.table[key]


def tiny_processor() -> SkiLvlmProcessor:
    return SkiLvlmProcessor(train_tokenizer(style="llama"), num_video_tokens=N_V, num_skeleton_tokens=N_S)
