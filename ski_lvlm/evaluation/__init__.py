"""Evaluation as library code; ``eval/*.py`` only turn command lines into these calls.

* :mod:`.sets`: eval-set files -> :class:`~.sets.EvalItem` lists (Charades CSV, caption JSON, QA JSON);
* :mod:`.captions`: resumable caption / QA generation through :class:`~ski_lvlm.inference.Captioner` and
  :func:`~.captions.evaluate_captions`, the whole benchmark;
* :mod:`.scoring`: scores of finished predictions (captions overall and per group, grounding, QA, MC);
* :mod:`.markdown`: ``results.md``;
* :mod:`.zero_shot`: zero-shot action recognition of model folders;
* :mod:`.run_report`: what a run folder holds and its report.md / report.html (``ski-lvlm eval all``).

Metrics themselves (BLEU..CIDEr-D, QA, classification) live in :mod:`ski_lvlm.metrics`.
"""

from ski_lvlm.evaluation.captions import evaluate_captions
from ski_lvlm.evaluation.sets import EvalItem, load_eval_set

__all__ = ["EvalItem", "evaluate_captions", "load_eval_set"]
