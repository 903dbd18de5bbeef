"""ski-lvlm eval compare-table: several ``eval compare`` results in one Markdown table.

    ski-lvlm eval compare-table --out runs/ablation/table.md \\
        xsub:ski=runs/ablation/xsub/compare_ski xview:ski=runs/ablation/xview/compare_ski --metric zero_shot_top1

Each argument is ``LABEL=FOLDER`` (or a bare FOLDER, labelled by its name): an ``eval compare`` output folder
(or its ``compare.json``). One row per label and metric: the arms, their means, B - A with its CI and both
p-values (``ski_lvlm.metrics.compare.compare_table_markdown``). Written atomically and printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ski_lvlm.utils.errors import UserError, cli_entry

PROG = "ski-lvlm eval compare-table"


@cli_entry(PROG)
def main(argv: list[str] | None = None) -> int:
    from ski_lvlm.metrics.compare import compare_table_markdown
    from ski_lvlm.utils.io import atomic_write_text

    p = argparse.ArgumentParser(prog=PROG, description="Collect eval compare results into one Markdown table.")
    p.add_argument("results", nargs="+", metavar="LABEL=FOLDER", help="eval compare output folders (or compare.json)")
    p.add_argument("--out", required=True, help="the Markdown file to write")
    p.add_argument("--metric", action="append", default=None, help="keep only this metric (repeatable)")
    args = p.parse_args(argv)
    entries = []
    for spec in args.results:
        label, _, folder = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path = Path(folder)
        path = path / "compare.json" if path.is_dir() else path
        try:
            entries.append((label or path.parent.name, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as e:
            raise UserError(f"{spec}: cannot read an eval compare result ({e})") from None
    text = compare_table_markdown(entries, args.metric)
    atomic_write_text(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
