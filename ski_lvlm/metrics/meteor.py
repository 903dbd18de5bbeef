"""METEOR 1.5 through Java, driven the way coco-caption drives it (the jar's ``-stdio`` protocol).

The jar comes from the pycocoevalcap wheel (or ``SKI_LVLM_METEOR_JAR``); :func:`meteor_available` says
whether it can run here. :func:`ski_lvlm.metrics.captions.compute_caption_metrics` uses this module and
reports METEOR as ``None`` with the reason when it cannot run.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Sequence

from ski_lvlm.metrics.tokenize import find_pycocoevalcap_file

__all__ = ["MeteorJava", "meteor_available"]


def _meteor_jar() -> Path | None:
    env = os.environ.get("SKI_LVLM_METEOR_JAR")
    if env:
        return Path(env) if Path(env).is_file() else None
    return find_pycocoevalcap_file("meteor/meteor-1.5.jar")


def meteor_available() -> tuple[bool, str]:
    """Whether METEOR 1.5 can run here, and why not when it cannot."""
    if shutil.which("java") is None:
        return False, "java is not on PATH (install a JRE, e.g. apt-get install default-jre-headless)"
    if _meteor_jar() is None:
        return False, "meteor-1.5.jar not found (pip install pycocoevalcap, or set SKI_LVLM_METEOR_JAR)"
    return True, "meteor-1.5.jar via java"


class MeteorJava:
    """A METEOR 1.5 scorer process, driven the way coco-caption drives it (``-stdio`` protocol).

    The JVM starts once (a few seconds) and is reused; calls are serialised by a lock, so one instance
    may be shared between threads. A read that takes longer than ``timeout`` seconds kills the process
    and raises ``RuntimeError`` instead of hanging. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, jar: str | os.PathLike | None = None, memory: str = "2G", timeout: float = 120.0):
        java = shutil.which("java")
        jar_path = Path(jar) if jar else _meteor_jar()
        if java is None or jar_path is None:
            raise RuntimeError(f"METEOR unavailable: {meteor_available()[1]}")
        if not jar_path.is_file():
            raise RuntimeError(f"METEOR unavailable: jar not found: {jar_path}")
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [java, "-jar", f"-Xmx{memory}", jar_path.name, "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=jar_path.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")  # EOF marker

    def _readline(self) -> str:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"METEOR did not answer within {self.timeout:.0f} s") from None
        if not line:
            raise RuntimeError("METEOR process exited unexpectedly")
        return line.decode("utf-8").strip()

    def _write(self, text: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write((text + "\n").encode("utf-8"))
        self._proc.stdin.flush()

    @staticmethod
    def _clean(s: str) -> str:
        # "|||" is the protocol separator; newlines would end the request early
        return " ".join(s.replace("|||", "").split())

    def score(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-item scores for tokenised candidates/references."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        if not candidates:
            return float("nan"), []
        with self._lock:
            if self._proc.poll() is not None:
                raise RuntimeError("METEOR process is not running")
            stats = []
            for cand, refs in zip(candidates, references):
                refs_s = " ||| ".join(self._clean(r) for r in refs)
                self._write(f"SCORE ||| {refs_s} ||| {self._clean(cand)}")
                stats.append(self._readline())
            self._write("EVAL ||| " + " ||| ".join(stats))
            per = [float(self._readline()) for _ in candidates]
            total = float(self._readline())
        return total, per

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        proc.kill()
        proc.wait(timeout=10)

    def __enter__(self) -> "MeteorJava":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; close() is the real API
        try:
            self.close()
        except Exception:
            pass
