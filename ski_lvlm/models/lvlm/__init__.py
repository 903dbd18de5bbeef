"""SKI-LVLM: video (+ skeleton) LLM around any Hugging Face causal LM. See the README section "SKI-LVLM: the video LLM"."""

from ski_lvlm.models.lvlm.configuration import SkiLvlmConfig
from ski_lvlm.models.lvlm.loading import load
from ski_lvlm.models.lvlm.modeling import SkiLvlmForConditionalGeneration, VideoTower
from ski_lvlm.models.lvlm.processing import IGNORE_INDEX, LabelError, SkiLvlmProcessor

__all__ = ["SkiLvlmConfig", "SkiLvlmForConditionalGeneration", "SkiLvlmProcessor", "VideoTower", "LabelError",
           "IGNORE_INDEX", "load"]

from transformers import AutoConfig as _AutoConfig  # noqa: E402

_AutoConfig.register("ski_lvlm", SkiLvlmConfig, exist_ok=True)
