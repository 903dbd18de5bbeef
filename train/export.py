"""Export a trained SKI-LVLM run: PEFT LoRA adapter + projectors + processor (or a merged model).

    ski-lvlm export --run runs/lvlm_instruct --out exports/lvlm_instruct
    ski-lvlm export --run runs/lvlm_instruct --out exports/lvlm_instruct_merged --merge --dtype bf16

The export loads without the training config (``Captioner.from_pretrained(OUT)``,
``ski_lvlm.models.lvlm.load(OUT)``, ``ski-lvlm demo --model OUT``). Every export ends with a reload
check (logits of the reloaded export vs the training-time model on probe inputs, max abs diff <= 1e-5
in fp32); on failure the command exits non-zero and nothing is written at --out. The export is built in
a hidden temporary folder next to --out and renamed at the end, so an interrupted export leaves nothing
at --out.

Backbone rule (adapter layout): a backbone written by the training run (RUN/base_llm, random preset
weights) is copied into OUT/base_llm so the export is self-contained; a hub id or your own local model
folder stays a reference (``--copy-base always`` copies it too).
"""

from __future__ import annotations

import argparse
import sys

from ski_lvlm.utils.errors import UserError, cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder of `ski-lvlm train lvlm` (or its final/ folder)")
    p.add_argument("--out", required=True, help="export folder to create")
    p.add_argument("--merge", action="store_true",
                   help="fold LoRA into the backbone; write one standalone sharded safetensors model")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="dtype of written weights")
    p.add_argument("--copy-base", default="auto", choices=("auto", "always", "never"),
                   help="copy the backbone into the export (auto: only a backbone the run itself wrote)")
    p.add_argument("--max-shard-size", default="2GB", help="safetensors shard size (merged model, copied backbone)")
    p.add_argument("--atol", type=float, default=1e-5, help="reload-check limit on the max abs logit difference")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (only after success)")
    return p


@cli_entry("ski-lvlm export")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ski_lvlm.export import ExportCheckError, ExportError, export_run

    try:
        res = export_run(args.run, args.out, merge=args.merge, dtype=args.dtype, overwrite=args.overwrite,
                         copy_base=args.copy_base, max_shard_size=args.max_shard_size, atol=args.atol)
    except ExportCheckError as e:
        print(f"ski-lvlm export: FAILED: {e}", file=sys.stderr)
        return 1
    except ExportError as e:
        raise UserError(str(e)) from None
    size = sum(res.files.values()) / 2**20
    print(f"exported {res.layout} ({res.dtype}, {len(res.files)} files, {size:.1f} MiB) to {res.out} in "
          f"{res.seconds:.1f}s; reload check max abs diff {res.max_abs_diff:.2e}")
    print(f"try it:  ski-lvlm caption VIDEO.mp4 --model {res.out}")
    print(f"demo:    ski-lvlm demo --model {res.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
