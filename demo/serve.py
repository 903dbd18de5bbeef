"""Serve an exported SKI-LVLM (or a plain causal LM, text only) over an OpenAI-compatible HTTP API.

    ski-lvlm serve --model exports/lvlm_instruct                       # http://127.0.0.1:8000/v1
    ski-lvlm serve --model smollm2-135m --port 8001                    # SmolLM2 as a local LLM judge
    SKI_LVLM_API_KEY=secret ski-lvlm serve --model exports/lvlm_instruct --max-batch 16

Endpoints: POST /v1/chat/completions, GET /v1/models, GET /health. A user message may carry one video as a
content part {"type": "video_url", "video_url": {"url": ...}} where url is a file path on this machine,
file:///path or data:video/mp4;base64,... ; "stream": true answers with server-sent events. Decoding:
temperature (0 = greedy), top_p, max_tokens, seed.

    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{"messages":
      [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "/data/clip.mp4"}},
                                    {"type": "text", "text": "What is the person doing?"}]}]}'

Concurrent requests are batched: up to --max-batch per generate call, from a queue of --queue waiting
requests (a full queue answers 503). Greedy requests batch together; sampled ones when temperature and
top_p match; a seeded sampled request runs alone (its seed then always gives the same text).
Bad requests get a 4xx JSON error ({"error": {"message", "type", "code"}}) before they are queued.

Security: binds 127.0.0.1 unless --host says otherwise. When $SKI_LVLM_API_KEY is set, /v1/* needs
"Authorization: Bearer $SKI_LVLM_API_KEY" (/health stays open); the key is never printed or logged.
Video paths in requests are read with this process's permissions: use --video-root to confine them.
--model also takes a registry name (`ski-lvlm models list`), e.g. smollm2-135m.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ski_lvlm.utils.errors import UserError, cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.environ.get("SKI_LVLM_MODEL"),
                   help="export folder (`ski-lvlm export`), a run's final/ folder, a plain causal-LM folder "
                        "(text only) or a registry name (default: $SKI_LVLM_MODEL)")
    p.add_argument("--name", default=None, help="model id clients send and /v1/models lists (default: folder name)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port")
    p.add_argument("--max-batch", type=int, default=8, help="requests per generate call at most")
    p.add_argument("--queue", type=int, default=64, help="requests waiting before new ones get 503")
    p.add_argument("--batch-window-ms", type=float, default=10.0,
                   help="wait this long for more requests before a batch starts (0 = never wait)")
    p.add_argument("--arrival-wait-ms", type=float, default=100.0,
                   help="while requests are still being received and parsed, wait up to this long for them "
                        "before a batch starts (keeps batches full under lock-step clients; 0 = never)")
    p.add_argument("--max-video-bytes", type=int, default=200 * 2**20, help="largest video (file or data: URL)")
    p.add_argument("--max-video-seconds", type=float, default=600.0, help="longest video")
    p.add_argument("--max-tokens-limit", type=int, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--default-max-tokens", type=int, default=256, help="max_tokens of a request that does not say")
    p.add_argument("--video-root", action="append", default=[], metavar="DIR",
                   help="only read video paths under DIR (repeatable; default: any path)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16", "fp16"), help="default: bf16 on CUDA, fp32 on CPU")
    return p


def make_server(args: argparse.Namespace):
    """(app, engine) for parsed arguments; the engine's worker is started."""
    from ski_lvlm.export import CorruptExportError
    from ski_lvlm.models.registry import resolve_model
    from ski_lvlm.serving import API_KEY_ENV, BatchingEngine, Limits, build_app, load_captioner

    bad = [f"--{k.replace('_', '-')} must be >= 1" for k in ("max_batch", "queue", "max_tokens_limit",
                                                            "default_max_tokens", "max_video_bytes")
           if getattr(args, k) < 1]
    bad += ["--max-video-seconds must be > 0"] * (args.max_video_seconds <= 0)
    bad += ["--batch-window-ms must be >= 0"] * (args.batch_window_ms < 0)
    bad += ["--arrival-wait-ms must be >= 0"] * (args.arrival_wait_ms < 0)
    bad += [f"--video-root {d}: not a folder" for d in args.video_root if not Path(d).is_dir()]
    if not args.model:
        bad.append("--model is required (an export folder; or set SKI_LVLM_MODEL)")
    if bad:
        raise UserError("; ".join(bad))
    folder = Path(resolve_model(args.model))
    if not folder.is_dir():
        raise UserError(f"--model {args.model}: folder not found (make one with `ski-lvlm export`)")
    try:
        cap = load_captioner(folder, device=args.device, dtype=args.dtype)
    except (CorruptExportError, FileNotFoundError, OSError, ValueError) as e:
        raise UserError(f"--model {args.model}: {e}") from None
    limits = Limits(max_video_bytes=args.max_video_bytes, max_video_seconds=args.max_video_seconds,
                    max_tokens=args.max_tokens_limit, default_max_tokens=args.default_max_tokens,
                    video_roots=tuple(args.video_root))
    engine = BatchingEngine(cap, max_batch=args.max_batch, max_queue=args.queue,
                            batch_window_s=args.batch_window_ms / 1000,
                            arrival_wait_s=args.arrival_wait_ms / 1000).start()
    app = build_app(engine, model_name=args.name or folder.name, limits=limits,
                    api_key=os.environ.get(API_KEY_ENV) or None)
    return app, engine


@cli_entry("ski-lvlm serve")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    import uvicorn

    from ski_lvlm.serving import API_KEY_ENV

    app, engine = make_server(args)
    kind = "video + text" if engine.cap.takes_video else "text only"
    key = f"required (${API_KEY_ENV})" if os.environ.get(API_KEY_ENV) else f"none (set ${API_KEY_ENV} to require one)"
    print(f"SKI-LVLM serve: {app.state.model_name} ({kind}) at http://{args.host}:{args.port}/v1  "
          f"[batch <= {args.max_batch}, queue {args.queue}, API key: {key}; Ctrl+C stops it]", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
