"""The ``ski-lvlm`` front door: routes ``ski-lvlm GROUP CMD ...`` to a recipe's ``main(argv)``.

This is the only library module that sees ``sys.argv``, and it only picks the recipe: each recipe
(in ``data_tools/``, ``train/``, ``eval/``, ``demo/``) parses its own arguments and has its own
``--help``. Recipes are imported lazily so ``ski-lvlm --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

# "group command" -> ("module:function", one-line help). Adding a recipe means adding a row.
COMMANDS: dict[str, tuple[str, str]] = {
    "data synthetic": ("data_tools.synthetic:main", "generate the synthetic ADL world (skeletons, videos, captions, splits)"),
    "data montage": ("data_tools.montage:main", "render a PNG montage of frames from a synthetic world"),
    "data ntu": ("data_tools.ntu:main", "convert NTU RGB+D .skeleton files to the npz the loaders read"),
    "data zsl": ("data_tools.ntu:zsl_main", "build NTU zero-shot split manifests from a dataset folder"),
    "data scan": ("data_tools.scan:main", "decode every video of a manifest; write a quarantine list and summary"),
    "data protocols": ("data_tools.protocols:main", "add cross-view and zero-shot validation manifests to a synthetic world"),
    "data charades": ("data_tools.charades:main", "build caption/QA/instruction sets from Charades annotations"),
    "data instructions": ("data_tools.instructions:main", "convert Video-ChatGPT / LLAVIDAL / LLaVA instruction JSON"),
    "data features": ("data_tools.features:main", "precompute video/skeleton feature caches (safetensors shards)"),
    "models list": ("data_tools.models:list_main", "named models (tiny presets, 7B shapes, real weights) and whether each is here"),
    "models prepare": ("data_tools.models:prepare_main", "make a named real model usable offline; prints its local folder last"),
    "train skeleton-clip": ("train.skeleton_clip:main", "phase 1: SkeletonCLIP skeleton-language pretraining"),
    "train ski-vlm": ("train.ski_vlm:main", "phase 2: SKI-VLM collaborative video training"),
    "train lvlm": ("train.lvlm:main", "phase 3: SKI-LVLM align / instruct (LoRA, DeepSpeed)"),
    "eval zero-shot": ("eval.zero_shot:main", "zero-shot action recognition on unseen classes"),
    "eval captions": ("eval.captions:main", "caption / QA benchmark of an LVLM checkpoint"),
    "eval probe": ("eval.probe:main", "linear probe: how much a video encoder's features hold about the labels"),
    "eval compare": ("eval.compare:main", "compare two groups of runs per metric: difference, bootstrap CI, permutation p"),
    "eval compare-table": ("eval.compare_table:main", "collect several eval compare results into one Markdown table"),
    "eval judge": ("eval.judge:main", "LLM-judge scores through an OpenAI-compatible endpoint"),
    "eval all": ("eval.report:main", "run every evaluation of a run folder and write report.md/html"),
    "export": ("train.export:main", "export a trained LVLM: PEFT adapter (+ optional merged model)"),
    "caption": ("demo.caption:main", "caption videos with an exported model"),
    "demo": ("demo.app:main", "Gradio caption/chat demo (binds 127.0.0.1)"),
    "serve": ("demo.serve:main", "OpenAI-compatible HTTP server for an exported model or a prepared LLM (binds 127.0.0.1)"),
}


def _usage() -> str:
    lines = ["usage: ski-lvlm COMMAND [ARGS...]   (ski-lvlm COMMAND --help for its options)", "", "commands:"]
    width = max(len(k) for k in COMMANDS)
    for key, (target, doc) in COMMANDS.items():
        lines.append(f"  {key:<{width}}  {doc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    key = None
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        key, rest = f"{argv[0]} {argv[1]}", argv[2:]
    elif argv[0] in COMMANDS:
        key, rest = argv[0], argv[1:]
    if key is None:
        print(f"ski-lvlm: unknown command {' '.join(argv[:2])!r}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[key][0].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            print(f"ski-lvlm: command {key!r} is not available in this version ({module_name} missing)", file=sys.stderr)
            return 2
        raise
    result = getattr(module, func_name)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
