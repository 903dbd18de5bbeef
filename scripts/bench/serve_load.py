"""Load test of ``ski-lvlm serve`` over loopback: many clients, bad requests mixed in, and batching vs one at a time.

    .venv/bin/python scripts/bench/serve_load.py                                  # the quickstart export
    .venv/bin/python scripts/bench/serve_load.py --model exports/lvlm_instruct --videos data/clips --out load.json

The script starts two servers itself, as subprocesses running the real CLI (``python -m ski_lvlm.cli serve``)
on 127.0.0.1 with free ports. It never talks to any other host. One server is **batched**
(``--max-batch``, 16 by default). The other, the **baseline**, serves one request at a time (``--max-batch 1``).
Each request is a greedy caption request with one video (a path under ``--videos``) and ``--max-tokens`` new
tokens at most. First every video is sent once to each server, untimed, so its features are cached there.
Then three phases run:

1. **Load** on the batched server: ``--clients`` (32) concurrent clients each send ``--requests`` (8) good
   requests. Every ``--bad-every``-th request (4) is followed by a bad one, cycling through the kinds in
   ``BAD_KINDS``: malformed JSON, a body that is not an object, ``max_tokens`` over the server's limit, a
   ``data:`` video over ``--max-video-bytes``, a body over the server's body limit, a prompt longer than the
   model's context, an unknown model, and a file that is not a video. Each bad request must get its 4xx.
   Reported: answered / lost / 5xx, p50 and p99 latency of the good requests, requests/s and generated
   tokens/s.
2. **Batching**: ``--batch-clients`` (16) concurrent clients x ``--batch-requests`` (4) good requests,
   against the batched server and then the baseline. This repeats ``--rounds`` (2) times in alternating
   order, so that load from other processes on a shared machine hits both sides alike. Reported:
   throughput of each side (the median over rounds) and batched / baseline, next to the 2x target.
3. A last request to each server checks that it still serves.

Bounds: every client sends a fixed number of requests, each with a timeout (``--request-timeout``). No
request starts after ``--deadline`` seconds from the first phase; a request that is never sent or never
answered counts as lost. Exit status: 0 when every check passes (the 2x target included), 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # fixed: the load only ever goes to this machine
ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ["Describe what the person is doing.", "What is the person doing?", "Which hand does the person use?",
             "Describe the video in one sentence."]
BAD_KINDS = ("malformed_json", "not_an_object", "max_tokens_over_limit", "video_over_limit", "body_over_limit",
             "prompt_over_context", "unknown_model", "not_a_video")


@dataclass
class Tally:
    """What one phase's clients saw; appended to from many threads (list.append is atomic)."""

    latencies: list[float] = field(default_factory=list)  # seconds, good requests answered with 200
    tokens: list[int] = field(default_factory=list)  # completion tokens of those
    bad_ok: list[str] = field(default_factory=list)  # bad requests that got the expected 4xx
    problems: list[str] = field(default_factory=list)  # anything else: 5xx, wrong status, timeouts
    lost: int = 0  # good requests never sent (deadline) or never answered
    wall_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def lose(self, n: int, problem: str | None) -> None:
        with self._lock:
            self.lost += n
            if problem:
                self.problems.append(problem)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
        return {"answered": len(lat), "lost": self.lost, "problems": len(self.problems),
                "server_errors_5xx": sum(p.startswith("HTTP 5") for p in self.problems),
                "bad_requests_4xx": len(self.bad_ok), "wall_s": round(self.wall_s, 2),
                "p50_s": round(q[49], 3) if lat else None, "p99_s": round(q[98], 3) if lat else None,
                "requests_per_s": round(len(lat) / self.wall_s, 3) if self.wall_s else None,
                "tokens_per_s": round(sum(self.tokens) / self.wall_s, 2) if self.wall_s else None,
                "first_problems": self.problems[:5]}


# ---------------------------------------------------------------------------------------------- the servers
class Server:
    """``ski-lvlm serve`` in a subprocess on 127.0.0.1; its output goes to a log file (shown on failure)."""

    def __init__(self, args: argparse.Namespace, max_batch: int, log_dir: Path, label: str):
        self.args, self.max_batch, self.label = args, max_batch, label
        self.log = log_dir / f"serve_{label}.log"
        self.start()

    def start(self) -> None:
        from ski_lvlm.serving import free_port

        args = self.args
        self.port = free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        cmd = [sys.executable, "-m", "ski_lvlm.cli", "serve", "--model", str(args.model), "--name", "bench",
               "--host", HOST, "--port", str(self.port), "--device", "cpu", "--max-batch", str(self.max_batch),
               "--queue", str(max(64, 2 * args.clients)), "--max-video-bytes", str(args.max_video_bytes),
               "--max-tokens-limit", str(args.max_tokens_limit), "--batch-window-ms", str(args.batch_window_ms),
               "--arrival-wait-ms", str(args.arrival_wait_ms)]
        env = {k: v for k, v in os.environ.items() if k != "SKI_LVLM_API_KEY"}  # no key: nothing to leak
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait_ready(self, timeout: float, retries: int = 3) -> None:
        """Until /health answers; a port taken between picking and binding it gets a new port (``retries``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.tail() and retries > 0:
                    retries -= 1
                    self.start()
                    continue
                raise SystemExit(f"the {self.label} server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"the {self.label} server did not start within {timeout:.0f} s:\n{self.tail()}")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=30).json()

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ---------------------------------------------------------------------------------------------- requests
def good_body(videos: list[Path], i: int, max_tokens: int) -> dict:
    content = [{"type": "video_url", "video_url": {"url": str(videos[i % len(videos)])}},
               {"type": "text", "text": QUESTIONS[i % len(QUESTIONS)]}]
    return {"model": "bench", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0}


def bad_request(kind: str, args: argparse.Namespace, junk: Path) -> tuple[dict, set[int]]:
    """``(httpx.post keyword arguments, the accepted statuses)`` for one kind of bad request."""
    def chat(text: str | list, **extra) -> dict:
        return {"json": {"model": "bench", "messages": [{"role": "user", "content": text}], **extra}}

    def video(url: str) -> list:
        return [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "What happens?"}]

    headers = {"content-type": "application/json"}
    if kind == "malformed_json":
        return {"content": b'{"messages": [{"role": "user", "content": "hi"', "headers": headers}, {400}
    if kind == "not_an_object":
        return {"content": b"[1, 2, 3]", "headers": headers}, {400}
    if kind == "max_tokens_over_limit":
        return chat("hi", max_tokens=args.max_tokens_limit + 1), {400}
    if kind == "video_over_limit":  # base64 of more bytes than --max-video-bytes: refused before decoding
        data = base64.b64encode(os.urandom(args.max_video_bytes + 1024)).decode()
        return chat(video("data:video/mp4;base64," + data)), {413}
    if kind == "body_over_limit":  # larger than any valid request can be (the server stops reading)
        size = args.max_video_bytes * 4 // 3 + 5 * 2**20
        return {"content": b'{"messages": "' + b"x" * size + b'"}', "headers": headers}, {413}
    if kind == "prompt_over_context":
        return chat("word " * 5000), {400}
    if kind == "unknown_model":
        return {"json": {**chat("hi")["json"], "model": "gpt-4o"}}, {404}
    if kind == "not_a_video":
        return chat(video(str(junk))), {400}
    raise ValueError(kind)


def one_client(url: str, plan: list[tuple[str, int]], args: argparse.Namespace, videos: list[Path], junk: Path,
               tally: Tally, stop_at: float) -> None:
    """Send ``plan`` in order: ``("good", i)`` or ``(bad_kind, 0)``. Bounded: len(plan) requests, each timed out."""
    with httpx.Client(base_url=url, timeout=args.request_timeout) as client:
        for n, (kind, i) in enumerate(plan):
            if time.monotonic() > stop_at:
                tally.lose(sum(k == "good" for k, _ in plan[n:]), "deadline reached before all requests were sent")
                return
            kwargs, want = ({"json": good_body(videos, i, args.max_tokens)}, {200}) if kind == "good" else \
                bad_request(kind, args, junk)
            t0 = time.perf_counter()
            try:
                r = client.post("/v1/chat/completions", **kwargs)
            except httpx.HTTPError as e:
                tally.lose(kind == "good", f"{kind}: {type(e).__name__}")
                continue
            dt = time.perf_counter() - t0
            if r.status_code not in want:
                tally.lose(kind == "good", f"HTTP {r.status_code} for {kind}: {r.text[:200]}")
            elif kind == "good":
                tally.latencies.append(dt)
                tally.tokens.append(r.json()["usage"]["completion_tokens"])
            else:
                tally.bad_ok.append(kind)


def run_phase(url: str, plans: list[list[tuple[str, int]]], args, videos, junk, stop_at: float) -> Tally:
    """All clients at once (one thread each); wall time from the first send to the last answer."""
    tally = Tally()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(plans)) as pool:
        for f in [pool.submit(one_client, url, plan, args, videos, junk, tally, stop_at) for plan in plans]:
            f.result()
    tally.wall_s = time.perf_counter() - t0
    return tally


def load_plans(args: argparse.Namespace) -> list[list[tuple[str, int]]]:
    """Per client: ``--requests`` good ones, and after every ``--bad-every``-th a bad one (kinds cycle)."""
    plans, n_bad = [], 0
    for c in range(args.clients):
        plan: list[tuple[str, int]] = []
        for j in range(args.requests):
            plan.append(("good", c * args.requests + j))
            if args.bad_every and (j + 1) % args.bad_every == 0:
                plan.append((BAD_KINDS[n_bad % len(BAD_KINDS)], 0))
                n_bad += 1
        plans.append(plan)
    return plans


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "runs/quickstart/export", help="export folder to serve")
    p.add_argument("--videos", type=Path, default=ROOT / "runs/quickstart/world/videos", help="folder of clips")
    p.add_argument("--num-videos", type=int, default=8, help="distinct clips the requests cycle through")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients in the load phase")
    p.add_argument("--requests", type=int, default=8, help="good requests per client in the load phase")
    p.add_argument("--bad-every", type=int, default=4, help="a bad request after every N good ones (0: none)")
    p.add_argument("--batch-clients", type=int, default=16, help="concurrent clients in the batching phase")
    p.add_argument("--batch-requests", type=int, default=4, help="requests per client in the batching phase")
    p.add_argument("--rounds", type=int, default=2, help="batched/baseline rounds (alternating order)")
    p.add_argument("--max-batch", type=int, default=16, help="the batched server's --max-batch")
    p.add_argument("--batch-window-ms", type=float, default=10.0, help="both servers' --batch-window-ms")
    p.add_argument("--arrival-wait-ms", type=float, default=100.0,
                   help="both servers' --arrival-wait-ms (0: the behaviour before it existed)")
    p.add_argument("--max-tokens", type=int, default=16, help="max_tokens of each good request")
    p.add_argument("--max-tokens-limit", type=int, default=64, help="the servers' --max-tokens-limit")
    p.add_argument("--max-video-bytes", type=int, default=256 * 1024, help="the servers' --max-video-bytes")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--deadline", type=float, default=3600.0, help="no request starts after this many seconds")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="seconds for a server to come up")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"--model {args.model}: not a model folder (run scripts/quickstart.sh first?)")
    videos = sorted(p for p in args.videos.glob("*.mp4"))[: args.num_videos]
    if not videos:
        raise SystemExit(f"--videos {args.videos}: no .mp4 files")
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        junk = Path(tmp) / "notes.mp4"
        junk.write_text("these are notes, not a video\n" * 50)
        servers = {"batched": Server(args, args.max_batch, Path(tmp), "batched"),
                   "baseline": Server(args, 1, Path(tmp), "baseline")}
        try:
            for s in servers.values():
                s.wait_ready(args.startup_timeout)
            return measure(args, servers, videos, junk)
        finally:
            for s in servers.values():
                s.stop()


def measure(args: argparse.Namespace, servers: dict[str, Server], videos: list[Path], junk: Path) -> int:
    """Warm-up, the three phases, the report. Returns the exit status."""
    t_start = time.monotonic()
    stop_at = t_start + args.deadline
    for s in servers.values():  # untimed: decode + encode every clip once (the server caches features)
        warm = run_phase(s.url, [[("good", i)] for i in range(len(videos))], args, videos, junk, stop_at)
        if warm.problems:
            raise SystemExit(f"warm-up on the {s.label} server failed: {warm.problems[:3]}\n{s.tail()}")
    load_before = os.getloadavg()
    h0 = servers["batched"].health()
    load = run_phase(servers["batched"].url, load_plans(args), args, videos, junk, stop_at)
    h1 = servers["batched"].health()
    load_sum = load.summary()
    load_sum["mean_batch"] = round((h1["requests_served"] - h0["requests_served"]) /
                                   max(1, h1["generate_calls"] - h0["generate_calls"]), 2)
    throughput: dict[str, list[dict]] = {"batched": [], "baseline": []}
    for r in range(args.rounds):
        for label in (("batched", "baseline") if r % 2 == 0 else ("baseline", "batched")):
            s = servers[label]
            before = s.health()
            plans = [[("good", c * args.batch_requests + j) for j in range(args.batch_requests)]
                     for c in range(args.batch_clients)]
            t = run_phase(s.url, plans, args, videos, junk, stop_at)
            after = s.health()
            row = t.summary()
            row["mean_batch"] = round((after["requests_served"] - before["requests_served"]) /
                                      max(1, after["generate_calls"] - before["generate_calls"]), 2)
            throughput[label].append(row)
            print(f"  round {r + 1} {label:8s}: {row['requests_per_s']} req/s, {row['tokens_per_s']} tok/s, "
                  f"mean batch {row['mean_batch']}, {row['answered']} answered, {row['lost']} lost", flush=True)
    still = {label: run_phase(s.url, [[("good", 0)]], args, videos, junk, stop_at).summary()["answered"] == 1
             for label, s in servers.items()}
    return report(args, videos, load_sum, throughput, still, load_before)


def report(args, videos, load_sum: dict, throughput: dict[str, list[dict]], still: dict[str, bool],
           load_before: tuple) -> int:
    med = {k: statistics.median(r["requests_per_s"] for r in rows) for k, rows in throughput.items()}
    ratio = med["batched"] / med["baseline"] if med["baseline"] else float("nan")
    n_good = args.clients * args.requests
    n_bad = sum(k != "good" for plan in load_plans(args) for k, _ in plan)
    checks = {
        f"load: {n_good} good requests all answered": load_sum["answered"] == n_good and load_sum["lost"] == 0,
        "load: no 5xx": load_sum["server_errors_5xx"] == 0,
        f"load: {n_bad} bad requests each got their 4xx": load_sum["bad_requests_4xx"] == n_bad,
        "load: nothing else went wrong": load_sum["problems"] == 0,
        "batching: every request answered": all(r["lost"] == 0 and r["problems"] == 0
                                                for rows in throughput.values() for r in rows),
        f"batching: batched >= 2x baseline at {args.batch_clients} clients": ratio >= 2.0,
        "both servers still serve": all(still.values()),
    }
    result = {"setup": {"model": str(args.model), "videos": len(videos), "max_tokens": args.max_tokens,
                        "max_batch": args.max_batch, "batch_window_ms": args.batch_window_ms,
                        "arrival_wait_ms": args.arrival_wait_ms,
                        "clients": args.clients, "requests": args.requests, "bad_every": args.bad_every,
                        "batch_clients": args.batch_clients, "batch_requests": args.batch_requests,
                        "rounds": args.rounds, "cpus": os.cpu_count(), "platform": platform.platform(),
                        "loadavg_before": [round(x, 2) for x in load_before],
                        "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
              "load": load_sum, "batching": throughput,
              "batched_over_baseline": round(ratio, 2), "checks": checks}
    print(f"\nload: {args.clients} clients x {args.requests} good requests (+{n_bad} bad), max_tokens "
          f"{args.max_tokens}, batched server (max batch {args.max_batch})")
    print(f"  answered {load_sum['answered']}/{n_good}, lost {load_sum['lost']}, 5xx {load_sum['server_errors_5xx']}, "
          f"bad requests with their 4xx {load_sum['bad_requests_4xx']}/{n_bad}")
    print(f"  latency p50 {load_sum['p50_s']} s, p99 {load_sum['p99_s']} s; {load_sum['requests_per_s']} req/s, "
          f"{load_sum['tokens_per_s']} tok/s; mean batch {load_sum['mean_batch']}")
    print(f"batching at {args.batch_clients} clients (median of {args.rounds} rounds): batched "
          f"{med['batched']:.3f} req/s vs one-at-a-time baseline {med['baseline']:.3f} req/s = {ratio:.2f}x "
          "(target >= 2x)")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
