"""An OpenAI-compatible chat-completions server around one :class:`~ski_lvlm.inference.Captioner`.

``ski-lvlm serve`` (``demo/serve.py``) wires this package to uvicorn; everything else lives here, in three
modules: ``parsing`` (request validation and limits), ``engine`` (the dynamic batcher) and ``app`` (HTTP):

* :func:`parse_request` turns an OpenAI ``/v1/chat/completions`` body into a :class:`ChatRequest`, or raises
  :class:`ApiError` (a 4xx with an OpenAI-style ``{"error": {"message", "type", "code"}}`` body). Supported:
  ``model``, ``messages`` (string content, or ``text`` parts and one ``video_url`` part whose ``url`` is a
  file path, ``file://...`` or ``data:video/mp4;base64,...``), ``temperature``, ``top_p``, ``max_tokens`` /
  ``max_completion_tokens``, ``seed``, ``stream``, ``stream_options.include_usage`` and ``n=1``; other
  fields are ignored. Videos are probed before they are queued (size, duration, "is it a video").
* :class:`BatchingEngine` owns a bounded queue and one worker thread. Each :meth:`Captioner.generate` call
  serves up to ``max_batch`` waiting requests (a full queue is a 503). **Batching rule:** requests share a
  call when their sampling is the same: every greedy request (``temperature=0``; ``top_p`` and ``seed``
  do not matter) batches with every other, sampled requests batch when ``temperature`` and ``top_p`` are
  equal, and a sampled request with a ``seed`` runs alone so that its seed gives the same text under any
  load. ``max_tokens`` may differ inside a batch (a per-row stopping criterion); so may having a video.
  ``Captioner`` has one ``GenerationConfig`` per call, hence the grouping rather than per-row parameters.
* :func:`build_app` is the FastAPI app (``/v1/chat/completions``, ``/v1/models``, ``/health``), with the
  optional API key (``Authorization: Bearer KEY``; ``/health`` stays open) and SSE streaming;
  :class:`BackgroundServer` runs it on 127.0.0.1 in a thread (tests, benchmarks).

Generation goes through ``Captioner.generate`` only: the server, the demo and ``ski-lvlm caption`` share one
inference path. Streaming uses a batch-aware ``transformers`` streamer that splits each step's tokens
``[b]`` by request, so streamed and non-streamed requests share batches too.
"""

from ski_lvlm.serving.app import API_KEY_ENV, BackgroundServer, build_app, free_port, sse_events
from ski_lvlm.serving.engine import BatchingEngine, Job, load_captioner
from ski_lvlm.serving.parsing import ApiError, ChatRequest, Completion, Limits, parse_request

__all__ = ["ApiError", "Limits", "ChatRequest", "Completion", "Job", "BatchingEngine", "parse_request",
           "load_captioner", "build_app", "BackgroundServer", "free_port", "sse_events", "API_KEY_ENV"]
