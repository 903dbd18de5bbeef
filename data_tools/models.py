"""Named models: what the toolkit knows, and making the real ones usable offline.

    ski-lvlm models list                   # tiny presets, 7B shapes, real weights; available here or not
    ski-lvlm models prepare smollm2-135m   # converts the GGUF once; prints the local folder last
    ski-lvlm train lvlm --config train/configs/lvlm/instruct_smol.yaml ...   # model.llm=smollm2-135m

``prepare`` is optional: ``model.llm=smollm2-135m`` prepares on first use. The folder lives under
``$SKI_LVLM_HOME`` (default ``~/.cache/ski_lvlm``) and loads with any Hugging Face tool.
"""

from __future__ import annotations

import argparse
import sys

from ski_lvlm.utils.errors import cli_entry


def build_list_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm models list", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    return p


def build_prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm models prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="a real model's name (see `ski-lvlm models list`), e.g. smollm2-135m")
    p.add_argument("--force", action="store_true", help="rebuild the prepared folder even if it is complete")
    return p


@cli_entry("ski-lvlm models list")
def list_main(argv: list[str] | None = None) -> int:
    args = build_list_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ski_lvlm.models.registry import list_models

    rows = list_models()
    if args.json:
        import json

        for r in rows:
            print(json.dumps(r))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'kind':<6}  {'here':<4}  description / where")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['kind']:<6}  {'yes' if r['available'] else 'no':<4}  {r['description']}")
        print(f"{'':<{w}}  {'':<6}  {'':<4}  -> {r['where']}")
    return 0


@cli_entry("ski-lvlm models prepare")
def prepare_main(argv: list[str] | None = None) -> int:
    args = build_prepare_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ski_lvlm.models.registry import prepare

    folder = prepare(args.name, force=args.force, log=lambda s: print(f"[models] {s}", flush=True))
    print(folder)  # last line: scripts read it with `| tail -1`
    return 0


if __name__ == "__main__":
    sys.exit(list_main())
