"""Gradio caption + chat demo for a trained / exported SKI-LVLM (binds 127.0.0.1 unless told otherwise).

    ski-lvlm demo --model exports/lvlm_instruct                      # http://127.0.0.1:7860
    ski-lvlm demo --model exports/lvlm_instruct --samples WORLD/videos --port 7861
    ski-lvlm demo --model exports/lvlm_instruct --preload SAMPLE     # page opens with frames + caption shown

Upload a video or pick a bundled sample, press "Caption": the sampled frames (exactly what the model
sees) appear in a gallery and the caption streams in; then ask follow-up questions in the chat (multi-turn,
streaming). Generation settings: prompt, max new tokens, temperature. Files that are too large
(--max-mb), too long (--max-seconds) or not videos are refused with a message before decoding.
Requests are queued (--concurrency generations at a time), so several users do not crash it.

Samples: --samples DIR (videos found recursively); by default MODEL/samples/, else the videos of the data
the model was trained on (the test split of a synthetic world when present: WORLD/instructions_test.json,
else WORLD/videos/), found through the export's export_info.json or the run's config.yaml.

All model logic lives in ski_lvlm.inference; this file only wires the UI.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from ski_lvlm.utils.errors import UserError, cli_entry

MAX_SAMPLES = 24
CSS = ".caption textarea {font-size: 1.1em}"


# ---------------------------------------------------------------------------------------------- samples
def default_samples(model_dir: str | Path) -> Path | None:
    """Where sample videos are looked for when --samples is not given (see the module docstring)."""
    model_dir = Path(model_dir)
    if (model_dir / "samples").is_dir():
        return model_dir / "samples"
    train_json = None
    info = model_dir / "export_info.json"
    if info.is_file():
        train_json = json.loads(info.read_text(encoding="utf-8")).get("train_json")
    cfg = model_dir.parent / "config.yaml"
    if train_json is None and cfg.is_file():
        import yaml

        train_json = ((yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("data") or {}).get("train_json")
    if train_json and Path(train_json).parent.is_dir():
        world = Path(train_json).parent
        return world / "instructions_test.json" if (world / "instructions_test.json").is_file() else world
    return None


def list_samples(source: str | Path | None, limit: int = MAX_SAMPLES) -> dict[str, str]:
    """``{display name: path}`` from a folder (recursive) or a LLaVA-style instruction JSON (its videos)."""
    from ski_lvlm.inference import find_videos

    if source is None or not Path(source).exists():
        return {}
    source = Path(source)
    if source.is_file() and source.suffix == ".json":
        records = json.loads(source.read_text(encoding="utf-8"))
        paths = []
        for r in records if isinstance(records, list) else []:
            v = r.get("video") if isinstance(r, dict) else None
            if v and (source.parent / v).is_file() and str(source.parent / v) not in paths:
                paths.append(str(source.parent / v))
        videos = [Path(p) for p in paths]
    else:
        videos = find_videos([source])
    return {v.name: str(v.resolve()) for v in videos[:limit]}


# ---------------------------------------------------------------------------------------------- handlers
def _text(content: Any) -> str:
    """Chat message content as plain text (gradio may hand back a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text", content.get("value", "")))
    return str(content)


class DemoLogic:
    """The UI callbacks, separate from Gradio so they read (and test) as plain Python."""

    def __init__(self, cap, samples: dict[str, str], *, max_mb: float = 200.0, max_seconds: float = 600.0):
        self.cap, self.samples = cap, samples
        self.max_bytes, self.max_seconds = int(max_mb * 2**20), max_seconds

    def pick(self, upload: Any, sample: str | None) -> str:
        path = upload.get("path") if isinstance(upload, dict) else upload
        if path:
            return str(path)
        if sample:
            if sample not in self.samples:
                raise ValueError(f"unknown sample {sample!r}")
            return self.samples[sample]
        raise ValueError("upload a video or pick a sample first")

    def sample_path(self, sample: str | None) -> str | None:
        return self.samples.get(sample) if sample else None

    def frames(self, path: str) -> list[tuple[Any, str]]:
        from ski_lvlm.inference import validate_video

        validate_video(path, max_bytes=self.max_bytes, max_seconds=self.max_seconds)
        frames = self.cap.sample_frames(path)  # uint8 [t, H, W, 3]
        return [(f, f"frame {i + 1}/{len(frames)}") for i, f in enumerate(frames)]

    def caption(self, upload: Any, sample: str | None, prompt: str, max_new_tokens: int, temperature: float
                ) -> Iterator[tuple]:
        """Yields (gallery, caption, chat history, status, video path) as the caption streams."""
        from ski_lvlm.inference import DEFAULT_PROMPT, VideoError

        prompt = (prompt or "").strip() or DEFAULT_PROMPT
        try:
            path = self.pick(upload, sample)
            gallery = self.frames(path)
        except (ValueError, VideoError) as e:
            yield [], "", [], f"**Cannot use this video:** {e}", None
            return
        name = Path(path).name
        yield gallery, "", [], f"Sampled {len(gallery)} frames from `{name}`; generating...", path
        text = ""
        try:
            for chunk in self.cap.stream(path, prompt, max_new_tokens=int(max_new_tokens),
                                         temperature=float(temperature)):
                text += chunk
                yield gallery, text, [], f"Generating for `{name}`...", path
        except VideoError as e:
            yield gallery, "", [], f"**Cannot use this video:** {e}", None
            return
        text = text.strip()
        history = [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
        yield gallery, text, history, f"Caption of `{name}` ({len(gallery)} frames). Ask follow-ups in the chat.", path

    def chat(self, message: str, history: list, path: str | None, max_new_tokens: int, temperature: float
             ) -> Iterator[tuple]:
        """Yields (chat history, cleared textbox, status) while the answer streams."""
        from ski_lvlm.inference import VideoError

        history = [{"role": m["role"], "content": _text(m["content"])} for m in (history or [])]
        message = (message or "").strip()
        if not path:
            yield history, message, "**Caption a video first**, then ask about it."
            return
        if not message:
            yield history, "", "Type a question first."
            return
        history.append({"role": "user", "content": message})
        answer = {"role": "assistant", "content": ""}
        try:
            for chunk in self.cap.stream(path, message, history[:-1], max_new_tokens=int(max_new_tokens),
                                         temperature=float(temperature)):
                answer["content"] += chunk
                yield history + [answer], "", "Answering..."
        except VideoError as e:
            yield history[:-1], message, f"**Cannot use this video:** {e}"
            return
        answer["content"] = answer["content"].strip()
        yield history + [answer], "", f"{len(history) // 2 + 1} turns about `{Path(path).name}`."

    def preload(self, sample: str, prompt: str, max_new_tokens: int, question: str | None = None) -> tuple:
        """The last state of :meth:`caption` for a sample (+ one chat turn): the page opens with a result."""
        last = None
        for last in self.caption(None, sample, prompt, max_new_tokens, 0.0):
            pass
        gallery, text, history, status, path = last
        if question and path:
            for history, _, status in self.chat(question, history, path, max_new_tokens, 0.0):
                pass
        return gallery, text, history, status, path


# ---------------------------------------------------------------------------------------------- UI
def build_demo(logic: DemoLogic, *, title: str = "SKI-LVLM video captioning", preload: tuple | None = None,
               preload_sample: str | None = None, prompt: str | None = None, max_new_tokens: int = 64):
    """The Gradio Blocks app (API endpoints: ``/caption``, ``/chat``)."""
    import gradio as gr

    from ski_lvlm.inference import DEFAULT_PROMPT

    gallery0, caption0, history0, status0, path0 = preload or ([], "", [], "", None)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"## {title}\nUpload a video or pick a sample, press **Caption**, then chat about it.")
        video_state = gr.State(path0)
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(value=path0, label="Video (upload, or the picked sample)", sources=["upload"],
                                 height=240)
                sample = gr.Dropdown(choices=list(logic.samples), value=preload_sample, label="...or a sample video",
                                     allow_custom_value=False)
                prompt_box = gr.Textbox(value=prompt or DEFAULT_PROMPT, label="Prompt", lines=1)
                with gr.Accordion("Generation settings", open=False):
                    max_tokens = gr.Slider(8, 512, value=max_new_tokens, step=8, label="Max new tokens")
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                run = gr.Button("Caption", variant="primary")
                status = gr.Markdown(status0)
            with gr.Column(scale=2):
                gallery = gr.Gallery(value=gallery0, label="Sampled frames (what the model sees)", columns=4,
                                     height=440, object_fit="contain")
                caption = gr.Textbox(value=caption0, label="Caption", lines=3, elem_classes="caption")
                chatbot = gr.Chatbot(value=history0, label="Chat about the video", height=360)
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a follow-up question...", show_label=False, scale=4)
                    send = gr.Button("Send", scale=1)
        sample.input(logic.sample_path, sample, video, api_name=False)  # show the picked sample in the player
        run.click(logic.caption, [video, sample, prompt_box, max_tokens, temperature],
                  [gallery, caption, chatbot, status, video_state], api_name="caption")
        chat_inputs = [question, chatbot, video_state, max_tokens, temperature]
        send.click(logic.chat, chat_inputs, [chatbot, question, status], api_name="chat")
        question.submit(logic.chat, chat_inputs, [chatbot, question, status], api_name=False)
    return demo


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def launch(demo, *, host: str = "127.0.0.1", port: int | None = None, concurrency: int = 1, max_queue: int = 32,
           max_mb: float = 200.0, allowed_paths: list[str] | None = None, block: bool = True):
    """Queue + launch; ``block=False`` returns at once (tests)."""
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, share=False, quiet=True,
                show_error=True, max_file_size=f"{int(max_mb)}mb", allowed_paths=allowed_paths or [],
                footer_links=[])
    return demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.environ.get("SKI_LVLM_MODEL"),
                   help="export folder or a run's final/ folder (default: $SKI_LVLM_MODEL)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (0 = any free port)")
    p.add_argument("--samples", default=None, help="folder (or instruction JSON) of sample videos")
    p.add_argument("--preload", default=None, metavar="SAMPLE",
                   help="caption this sample at startup so the page opens with frames + caption ('first' = the first)")
    p.add_argument("--ask", default=None, metavar="QUESTION", help="with --preload: also ask this follow-up question")
    p.add_argument("--prompt", default=None, help="default prompt")
    p.add_argument("--max-new-tokens", type=int, default=64, help="default of the slider")
    p.add_argument("--max-mb", type=float, default=200.0, help="largest accepted upload in MB")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest accepted video in seconds")
    p.add_argument("--concurrency", type=int, default=1, help="generations running at the same time")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting before new ones are refused")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    return p


@cli_entry("ski-lvlm demo")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.model or not Path(args.model).is_dir():
        raise UserError(f"--model: export folder not found: {args.model!r} (make one with `ski-lvlm export`)")
    from ski_lvlm.export import CorruptExportError
    from ski_lvlm.inference import Captioner

    source = args.samples or default_samples(args.model)
    if args.samples and not Path(args.samples).exists():
        raise UserError(f"--samples {args.samples}: not found")
    samples = list_samples(source)
    try:
        cap = Captioner.from_pretrained(args.model, device=args.device)
    except (CorruptExportError, FileNotFoundError, ValueError) as e:
        raise UserError(f"--model {args.model}: {e}") from None
    logic = DemoLogic(cap, samples, max_mb=args.max_mb, max_seconds=args.max_seconds)
    preload = preload_sample = None
    if args.preload:
        preload_sample = next(iter(samples), None) if args.preload == "first" else args.preload
        if preload_sample not in samples:
            raise UserError(f"--preload {args.preload!r}: not one of the {len(samples)} samples "
                            f"({', '.join(list(samples)[:5])}...)")
        preload = logic.preload(preload_sample, args.prompt or "", args.max_new_tokens, args.ask)
    demo = build_demo(logic, title=f"SKI-LVLM: {Path(args.model).name}", preload=preload,
                      preload_sample=preload_sample, prompt=args.prompt, max_new_tokens=args.max_new_tokens)
    port = free_port(args.host) if args.port == 0 else args.port
    print(f"SKI-LVLM demo: http://{args.host}:{port}  ({len(samples)} samples from {source}; Ctrl+C stops it)",
          flush=True)
    allowed = [str(Path(p).parent) for p in samples.values()]
    launch(demo, host=args.host, port=port, concurrency=args.concurrency, max_queue=args.max_queue,
           max_mb=args.max_mb, allowed_paths=sorted(set(allowed)), block=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
