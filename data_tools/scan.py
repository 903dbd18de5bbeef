"""Decode every video of a manifest in parallel; write a quarantine list and a summary (``ski-lvlm data scan``).

    ski-lvlm data scan data/ntu60/zsl_48-12/zsl_base_train.csv --workers 8 --out data/ntu60/scan

Each video is fully decoded (PyAV, no RGB conversion) in a worker process. A file that fails, decodes
fewer frames than its header promises, or runs past ``--timeout`` goes to ``quarantine.txt``
(``PATH<TAB>REASON: detail``; read it with ``ski_lvlm.data.video.read_quarantine``). A worker that hangs
inside the decoder or crashes is killed/replaced, so one bad file never stalls the scan.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection, wait
from pathlib import Path

from tqdm import tqdm

from ski_lvlm.data.ntu import read_manifest
from ski_lvlm.data.video import scan_video
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_json, atomic_write_text

_GRACE_S = 10.0  # beyond the in-worker timeout, before the parent kills a stuck worker


def _worker(slot: int, tasks, conn, timeout: float, current, started) -> None:
    """Scan files from ``tasks`` and send each record through ``conn`` (a pipe: the send is complete
    before the next file starts, so a later crash loses nothing). ``current[slot]`` / ``started[slot]``
    (shared memory) tell the parent which file this process holds even if it dies without a word."""
    while True:
        item = tasks.get()
        if item is None:
            return
        i, path = item
        started[slot] = time.monotonic()
        current[slot] = i
        rec = scan_video(path, timeout=timeout)
        conn.send((i, rec))
        if rec.get("reason") == "timeout":
            os._exit(0)  # the abandoned decode thread may still be spinning: the parent starts a fresh worker


def _blank(path: str, reason: str, msg: str) -> dict:
    return {"path": path, "ok": False, "reason": reason, "error": f"{path}: {reason}: {msg}", "num_frames": None,
            "decoded_frames": 0, "fps": None, "width": None, "height": None, "duration": None}


class _ScanPool:
    """Worker processes scanning ``paths``, and the parent's record of which file each one holds.

    Slot ``s`` is one worker at a time: ``current[s]`` / ``started[s]`` (shared memory) say which file it
    took and when, ``conns[s]`` is the read end of its result pipe. A dead or killed worker is replaced in
    the same slot.
    """

    def __init__(self, paths: list[str], workers: int, timeout: float, progress=None):
        self.paths, self.timeout, self.progress = paths, timeout, progress
        self.ctx = mp.get_context()
        self.tasks = self.ctx.Queue()
        for i, p in enumerate(paths):
            self.tasks.put((i, p))
        n_slots = min(workers, len(paths))
        self.current = self.ctx.Array("q", [-1] * n_slots, lock=False)  # file index each worker holds (-1: none yet)
        self.started = self.ctx.Array("d", [0.0] * n_slots, lock=False)  # time.monotonic() when it took that file
        self.procs: dict[int, mp.process.BaseProcess] = {}  # slot -> process
        self.conns: dict[int, Connection] = {}  # slot -> read end of its result pipe
        self.killed: set[int] = set()
        self.recs: list[dict | None] = [None] * len(paths)
        self.left = len(paths)
        for slot in range(n_slots):
            self.spawn(slot)

    def spawn(self, slot: int) -> None:
        self.current[slot] = -1
        r, w = self.ctx.Pipe(duplex=False)
        pr = self.ctx.Process(target=_worker, args=(slot, self.tasks, w, self.timeout, self.current, self.started),
                              daemon=True)
        pr.start()
        w.close()
        self.procs[slot], self.conns[slot] = pr, r

    def finish(self, i: int, rec: dict) -> None:
        if self.recs[i] is None:
            self.recs[i] = rec
            self.left -= 1
            if self.progress:
                self.progress(1)

    def read(self, conn: Connection) -> bool:
        """Receive everything waiting on ``conn``; False once the worker's end is closed."""
        try:
            while conn.poll():
                self.finish(*conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def busy(self, slot: int) -> bool:
        """The worker in ``slot`` holds a file that has no record yet."""
        i = self.current[slot]
        return i >= 0 and self.recs[i] is None

    def reap(self, slot: int, now: float) -> None:
        """Kill the worker in ``slot`` when it is past ``timeout + grace`` on one file; when it has ended,
        record its file (``timeout`` if killed, else ``decode_error``) and start a new worker."""
        pr = self.procs[slot]
        if self.busy(slot) and now - self.started[slot] > self.timeout + _GRACE_S and pr.is_alive():
            pr.kill()  # stuck inside a decoder while holding the GIL: nothing else stops it
            self.killed.add(pr.pid)
            pr.join(2)
        if pr.is_alive():
            return
        pr.join()
        self.read(self.conns[slot])  # whatever it sent before it ended
        self.conns.pop(slot).close()
        i = self.current[slot]
        if i >= 0 and self.recs[i] is None:
            why = "timeout" if pr.pid in self.killed else "decode_error"
            self.finish(i, _blank(self.paths[i], why, f"worker stopped (exit code {pr.exitcode})"))
        del self.procs[slot]
        if self.left > 0:
            self.spawn(slot)

    def run(self) -> None:
        """Collect records until every file has one."""
        last_msg = time.monotonic()
        while self.left > 0:
            ready = wait(list(self.conns.values()), timeout=0.2)
            for conn in ready:
                self.read(conn)
            if ready:
                last_msg = time.monotonic()
            now = time.monotonic()
            for slot in list(self.procs):
                self.reap(slot, now)
            busy_any = any(self.busy(s) for s in self.procs)
            if self.left > 0 and not busy_any and now - last_msg > self.timeout + _GRACE_S + 5:
                for i, r in enumerate(self.recs):  # taken by a worker that died before recording it
                    if r is None:
                        self.finish(i, _blank(self.paths[i], "decode_error", "lost by a crashed worker"))

    def close(self) -> None:
        """Stop the workers (a sentinel each, then kill what does not exit) and close the pipes."""
        for _ in self.procs:
            self.tasks.put(None)
        for pr in self.procs.values():
            pr.join(2)
            if pr.is_alive():
                pr.kill()
        for c in self.conns.values():
            c.close()


def scan_paths(paths: list[str], workers: int, timeout: float, progress=None) -> list[dict]:
    """Scan ``paths`` with ``workers`` processes; returns one record per path (same order).

    The parent watches each worker's current file: past ``timeout + grace`` it kills the worker (a decoder
    stuck while holding the GIL cannot be stopped any other way), records ``timeout`` and starts a new one;
    a worker that crashes (e.g. a segfault in a codec) costs only its current file (``decode_error``).
    """
    if workers <= 1:
        out = []
        for p in paths:
            out.append(scan_video(p, timeout=timeout))
            if progress:
                progress(1)
        return out
    pool = _ScanPool(paths, workers, timeout, progress)
    try:
        pool.run()
    finally:
        pool.close()
    return [r for r in pool.recs if r is not None]


def summarize(recs: list[dict], elapsed: float) -> dict:
    ok = [r for r in recs if r["ok"]]

    def stats(vals: list[float]) -> dict:
        if not vals:
            return {}
        return {"min": min(vals), "max": max(vals), "mean": statistics.fmean(vals),
                "median": statistics.median(vals), "total": sum(vals)}

    return {
        "count": len(recs),
        "ok": len(ok),
        "failed": len(recs) - len(ok),
        "failures": dict(Counter(r["reason"] for r in recs if not r["ok"]).most_common()),
        "duration_s": stats([r["duration"] for r in ok if r["duration"] is not None]),
        "frames": stats([r["decoded_frames"] for r in ok]),
        "fps": {f"{k:g}": v for k, v in Counter(round(r["fps"], 3) for r in ok if r["fps"]).most_common()},
        "resolutions": {k: v for k, v in Counter(f"{r['width']}x{r['height']}" for r in ok).most_common()},
        "elapsed_s": round(elapsed, 3),
        "videos_per_s": round(len(recs) / elapsed, 2) if elapsed > 0 else None,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ski-lvlm data scan",
        description="Decode every video listed in a video_path,skeleton_path,label manifest (relative paths "
        "resolve against the manifest's folder). Writes OUT/quarantine.txt (bad videos, one per line: "
        "PATH<TAB>REASON: detail) and OUT/scan_summary.json (count, durations, fps, resolutions, failures "
        "by reason). Exit code 0 even when videos fail; 2 for a bad manifest.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("manifest", type=Path, nargs="+", help="manifest CSV(s); videos are deduplicated")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoder processes")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <first manifest folder>/scan)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per video")
    return p


@cli_entry("ski-lvlm data scan")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.workers <= 0 or args.timeout <= 0:
        raise UserError("--workers and --timeout must be > 0")
    paths: list[str] = []
    seen: set[str] = set()
    for m in args.manifest:
        if not m.is_file():
            raise UserError(f"{m}: no such manifest")
        try:
            rows = read_manifest(m)
        except ValueError as e:
            raise UserError(str(e)) from None
        for r in rows:
            s = str(r.video_path)
            if s not in seen:
                seen.add(s)
                paths.append(s)
    if not paths:
        raise UserError(f"{args.manifest[0]}: no rows")
    out = args.out or args.manifest[0].parent / "scan"
    bar = tqdm(total=len(paths), unit="video", desc="scan", dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        recs = scan_paths(paths, args.workers, args.timeout, progress=bar.update)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    summary = summarize(recs, elapsed)
    bad = [r for r in recs if not r["ok"]]
    lines = ["# ski-lvlm data scan: videos to exclude (PATH<TAB>REASON: detail)\n"]
    for r in bad:
        detail = (r["error"] or "").split(f"{r['reason']}: ", 1)[-1].replace("\t", " ").replace("\n", " ")
        lines.append(f"{r['path']}\t{r['reason']}: {detail}\n")
    atomic_write_text(out / "quarantine.txt", "".join(lines))
    atomic_write_json(out / "scan_summary.json", summary)
    print(f"scanned {summary['count']} videos in {elapsed:.1f} s: {summary['ok']} ok, {summary['failed']} "
          f"quarantined {summary['failures'] or ''} -> {out}/quarantine.txt, {out}/scan_summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
