"""SKI-LVLM toolkit: skeleton-induced vision-language models for activities of daily living.

Subpackages: ``data`` (synthetic world, NTU, Charades, video, feature cache), ``models`` (skeleton encoder,
SkeletonCLIP/SKI-VLM, the SKI-LVLM video LLM), ``metrics`` (caption metrics, LLM judge, QA), ``training``
(checkpoints, schedules, DeepSpeed), plus ``export`` and ``inference``. Recipes live outside the library
(``train/``, ``eval/``, ``data_tools/``, ``demo/``) and are reached through the ``ski-lvlm`` command.
"""

__version__ = "0.1.0"
