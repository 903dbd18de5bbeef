"""Peak memory of reading an instruction set: the map-style path (baseline) against the stream (data.streaming).

    python scripts/bench/stream_memory.py --records 200000            # writes a synthetic JSONL under /tmp
    python scripts/bench/stream_memory.py --jsonl big.jsonl           # your own set

Each contender runs in a fresh process (peak RSS is per process): ``map`` is what ``train lvlm`` does before
step 1 without streaming (``read_training_records``: the Arrow rows plus every record as a dict in memory),
``stream`` reads every row through ``read_training_stream`` and converts it to a record one at a time, as
``LvlmStream`` does. Neither tokenises nor reads features, so the difference is the records alone. Prints
peak RSS above the imports (torch and datasets, which every training process holds), and the ratio map / stream.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_set(path: Path, n: int) -> None:
    """``n`` LLaVA records shaped like the world's (two QA turns, video and skeleton paths)."""
    with path.open("w") as f:
        for i in range(n):
            conv = [{"from": "human", "value": "<video>\nDescribe what the person does in this clip."},
                    {"from": "gpt", "value": f"The person in clip {i} raises the left hand slowly, then lowers it."},
                    {"from": "human", "value": "Which hand is used?"}, {"from": "gpt", "value": "The left hand."}]
            f.write(json.dumps({"id": f"clip{i:08d}", "video": f"videos/clip{i:08d}.mp4",
                                "skeleton": f"skeletons/clip{i:08d}.skeleton", "conversations": conv}) + "\n")


def child(mode: str, path: str) -> None:
    """Run one contender in this process; print its peak RSS (MB) as JSON."""
    sys.path.insert(0, str(REPO))
    import datasets  # noqa: F401  (imported up front: load_dataset pulls in torch, ~500 MB, in both paths)
    import torch  # noqa: F401  (a training process has it anyway)

    from ski_lvlm.data.instruction_sets import read_training_records, read_training_stream, to_records

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after the imports
    t0 = time.perf_counter()
    if mode == "map":
        records, _ = read_training_records([path])
        n = len(records)
    else:
        n = sum(len(to_records([row])) for row in read_training_stream([path]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "records": n, "peak_mb": peak, "import_mb": base, "seconds": time.perf_counter() - t0}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=200_000, help="synthetic records to write (without --jsonl)")
    p.add_argument("--jsonl", help="an existing instruction set (.jsonl / .parquet / datasets folder)")
    p.add_argument("--child", choices=["map", "stream"], help=argparse.SUPPRESS)
    p.add_argument("--out", help="also write the result as JSON here")
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.jsonl)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.jsonl) if args.jsonl else Path(tmp) / "set.jsonl"
        if not args.jsonl:
            write_set(path, args.records)
        res = {}
        for mode in ("map", "stream"):  # fresh processes; datasets' cache is warm for the second alike
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--jsonl", str(path)], check=True,
                                 capture_output=True, text=True, cwd=tmp).stdout
            res[mode] = json.loads(out.strip().splitlines()[-1])
            r = res[mode]
            print(f"{mode:6s}: {r['records']} records, peak RSS {r['peak_mb']:.0f} MB "
                  f"({r['peak_mb'] - r['import_mb']:.0f} MB above the imports), {r['seconds']:.1f} s")
        res["baseline"] = "map"
        res["ratio_map_over_stream_above_imports"] = ((res["map"]["peak_mb"] - res["map"]["import_mb"])
                                                      / max(res["stream"]["peak_mb"] - res["stream"]["import_mb"], 1))
        print(f"memory above the imports, map-style / stream: {res['ratio_map_over_stream_above_imports']:.1f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
