"""The dynamic batcher: a bounded queue and one worker thread that serves it through ``Captioner.generate``.

The batching rule (which requests may share a call) is :attr:`ChatRequest.batch_key`; see the package docstring.
"""

import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import torch

from ski_lvlm.serving.parsing import ApiError, ChatRequest, Completion


class Job:
    """One queued request. The worker emits ``("start",)`` (generation is about to begin), ``("delta", text)``
    (streaming only), then ``("done", Completion)`` or ``("error", ApiError)``.

    ``emit`` receives the events (the app bridges them into asyncio); by default they go to ``self.events``,
    which :meth:`result` reads.
    """

    def __init__(self, request: ChatRequest, emit: Callable[[tuple], None] | None = None):
        self.request = request
        self.events: queue.Queue = queue.Queue()
        self._emit = emit or self.events.put
        self.finished = False

    def emit(self, event: tuple) -> None:
        if event[0] in ("done", "error"):
            self.finished = True
            self.request.cleanup()  # before the client hears of it
        try:
            self._emit(event)
        except RuntimeError:  # the client's event loop is gone (server shutting down)
            pass

    def result(self, timeout: float | None = None) -> Completion:
        """Block until done (library use); raises the request's :class:`ApiError`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            kind, *rest = self.events.get(timeout=left)
            if kind == "done":
                return rest[0]
            if kind == "error":
                raise rest[0]


class _Rows:
    """A ``transformers`` streamer for a whole batch: splits each step's tokens ``[b]`` by request.

    Tracks per row the generated ids (without the stop token), whether a stop token ended it, and, for
    streaming requests, emits the text added since the last step (held back while it ends in a partial
    UTF-8 character).
    """

    def __init__(self, jobs: list[Job], processor: Any):
        self.jobs, self.processor = jobs, processor
        self.stop_ids = set(processor.stop_token_ids)
        self.tokens: list[list[int]] = [[] for _ in jobs]
        self.stopped = [False] * len(jobs)
        self.sent = [""] * len(jobs)
        self.width: int | None = None  # prompt width s (left-padded)

    def done(self, i: int) -> bool:
        return self.stopped[i] or len(self.tokens[i]) >= self.jobs[i].request.max_tokens

    def put(self, value: torch.Tensor) -> None:
        if self.width is None:  # generate first hands over the prompt ids [b, s]
            self.width = value.shape[-1]
            return
        for i, tok in enumerate(value.reshape(-1).tolist()):  # [b]
            if self.done(i):
                continue  # padding after the row ended
            if tok in self.stop_ids:
                self.stopped[i] = True
                continue
            self.tokens[i].append(tok)
            if self.jobs[i].request.stream:
                self.flush(i)

    def flush(self, i: int, final: str | None = None) -> None:
        text = self.processor.decode(self.tokens[i]) if final is None else final
        if (final is None and text.endswith("\ufffd")) or not text.startswith(self.sent[i]):
            return  # a partial character, or a retokenised prefix: wait for more
        delta, self.sent[i] = text[len(self.sent[i]):], text
        if delta:
            self.jobs[i].emit(("delta", delta))

    def end(self) -> None:
        pass


class _MaxTokens:
    """Per-row ``max_tokens`` as a stopping criterion ``[b]``: rows of one batch may want different lengths.

    Counted from ``input_ids`` ``[b, s + n]``: generate calls the criteria before the streamer sees a step.
    """

    def __init__(self, rows: _Rows):
        self.limits = torch.tensor([j.request.max_tokens for j in rows.jobs])  # [b]
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        n = input_ids.shape[1] - (self.rows.width or 0)
        return (n >= self.limits).to(input_ids.device)  # [b]


class BatchingEngine:
    """A bounded queue and one worker thread that serves it in batches through ``cap.generate``.

    Args:
        cap: the :class:`~ski_lvlm.inference.Captioner`.
        max_batch: requests per ``generate`` call at most.
        max_queue: requests waiting (not yet running) at most; :meth:`submit` raises a 503 beyond.
        batch_window_s: after taking the first waiting request, wait this long for more to arrive
            unless the batch is already full. While a batch runs, new requests queue anyway, so under load
            batches fill without it; it helps clients that send in lock step.
        arrival_wait_s: while requests are still being received (:meth:`begin_arrival`: body read, parsed,
            video probed), wait for them up to this long after the first one was taken. Why: closed-loop
            clients answered by one batch send their next requests together, but parsing them takes longer
            than ``batch_window_s``; without this the first few start a batch alone and the clients split into
            two alternating halves (8.0 requests per call at 16 clients, README).
    """

    def __init__(self, cap: Any, *, max_batch: int = 8, max_queue: int = 64, batch_window_s: float = 0.01,
                 arrival_wait_s: float = 0.1):
        if max_batch < 1 or max_queue < 1 or batch_window_s < 0 or arrival_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1, batch_window_s and arrival_wait_s >= 0")
        self.cap, self.max_batch, self.max_queue, self.batch_window_s = cap, max_batch, max_queue, batch_window_s
        self.arrival_wait_s = arrival_wait_s
        self._arriving = 0  # requests between begin_arrival and submit
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.generate_calls = 0
        self.batch_sizes: list[int] = []  # one entry per generate call (tests, /health)

    def start(self) -> "BatchingEngine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ski-lvlm-serve", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking requests; queued ones get a 503; the running batch finishes."""
        with self._cond:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for job in left:
            job.emit(("error", ApiError(503, "the server is shutting down", "shutting_down", "server_error")))
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def begin_arrival(self) -> None:
        """A request is being received; end it with :meth:`submit` (``arrived=True``) or :meth:`end_arrival`."""
        with self._cond:
            self._arriving += 1

    def end_arrival(self) -> None:
        """A request announced by :meth:`begin_arrival` will not be submitted (it was refused)."""
        with self._cond:
            self._arrival_ended()

    def _arrival_ended(self) -> None:  # under self._cond
        self._arriving = max(self._arriving - 1, 0)
        self._cond.notify_all()

    def submit(self, request: ChatRequest, emit: Callable[[tuple], None] | None = None, *,
               arrived: bool = False) -> Job:
        """Queue a request (503 when the queue is full or closing); ``arrived`` ends its :meth:`begin_arrival`
        in the same step, so the worker never sees it neither arriving nor waiting."""
        with self._cond:
            try:  # queued or refused, the arrival ends under the same lock, whatever is raised
                if self._closed or len(self._waiting) >= self.max_queue:
                    request.cleanup()
                    raise ApiError(503, f"the server is busy ({len(self._waiting)} requests queued); retry later",
                                   "queue_full", "server_error")
                job = Job(request, emit)
                self._waiting.append(job)
                self._cond.notify()
            finally:
                if arrived:
                    self._arrival_ended()
        return job

    def _take(self) -> list[Job] | None:
        """The next batch: the oldest request and up to ``max_batch - 1`` later ones with its batch key."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            start = time.monotonic()
            window, longest = start + self.batch_window_s, start + max(self.batch_window_s, self.arrival_wait_s)
            while len(self._waiting) < self.max_batch and not self._closed:
                left = (longest if self._arriving else window) - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._waiting:
                return None
            key = self._waiting[0].request.batch_key
            batch = [j for j in self._waiting if j.request.batch_key == key][: self.max_batch]
            for j in batch:
                self._waiting.remove(j)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self.run_batch(batch)
            finally:
                for job in batch:
                    if not job.finished:
                        job.emit(("error", ApiError(500, "internal error", "internal_error", "server_error")))

    def run_batch(self, jobs: list[Job]) -> None:
        """Decode the videos (features are cached per file), then one ``generate`` call for the batch."""
        from transformers import StoppingCriteriaList

        from ski_lvlm.inference import VideoError

        ready, feats = [], []
        for job in jobs:
            if job.request.video is not None:
                try:
                    feats.append(self.cap.features(job.request.video))  # [1, n_v, d_v]
                except VideoError as e:
                    job.emit(("error", ApiError(400, str(e), "invalid_video")))
                    continue
            ready.append(job)
        if not ready:
            return
        for job in ready:
            job.emit(("start",))
        reqs = [j.request for j in ready]
        rows = _Rows(ready, self.cap.processor)
        first = reqs[0]  # every request of the batch samples alike (batch_key)
        try:
            texts = self.cap.generate(
                [r.messages for r in reqs], torch.cat(feats) if feats else None,  # [b_v, n_v, d_v]
                has_video=[r.video is not None for r in reqs], max_new_tokens=max(r.max_tokens for r in reqs),
                temperature=first.temperature, top_p=first.top_p,
                seed=first.seed if first.temperature > 0 else None, streamer=rows,
                stopping_criteria=StoppingCriteriaList([_MaxTokens(rows)]))
        except Exception as e:  # noqa: BLE001 - every client of the batch gets a 500 with the reason
            err = ApiError(500, f"generation failed: {type(e).__name__}: {e}", "generation_failed", "server_error")
            for job in ready:
                job.emit(("error", err))
            return
        finally:
            self.generate_calls += 1
            self.batch_sizes.append(len(ready))
        for i, (job, text) in enumerate(zip(ready, texts)):
            if job.request.stream:
                rows.flush(i, final=text)
            job.emit(("done", Completion(text, "stop" if rows.stopped[i] else "length", job.request.prompt_tokens,
                                         len(rows.tokens[i]))))


def load_captioner(path: str | Path, *, device: str = "auto", dtype: str | None = None) -> Any:
    """An export / a run's ``final/`` folder (``processor_config.json``) or a plain causal-LM folder (text only)."""
    from ski_lvlm.inference import Captioner

    path = Path(path)
    if (path / "processor_config.json").is_file():
        return Captioner.from_pretrained(path, device=device, dtype=dtype)
    if (path / "config.json").is_file():
        return Captioner.from_llm(path, device=device, dtype=dtype)
    raise FileNotFoundError(f"{path}: neither a SKI-LVLM export (processor_config.json) nor a model folder "
                            "(config.json)")

