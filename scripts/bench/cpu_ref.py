"""How fast is this machine? fp32 and bf16 matmul throughput, so that wall-clock figures can be compared.

    python scripts/bench/cpu_ref.py          # prints one line; the quickstart prints it first

Why: the same 2-core cloud machine type has been measured here at different speeds on different days
(the quickstart's LVLM step went from 270 to 180 tokens/s with no code change), so a quickstart time is
only meaningful next to the machine's own matmul speed. Shapes are those of SmolLM2-135M's MLP on a
packed batch ([1024, 576] x [576, 1536]), with the threads torch uses by default.
"""

from __future__ import annotations

import time

import torch


def gflops(dtype: torch.dtype, m: int = 1024, k: int = 576, n: int = 1536, seconds: float = 1.0) -> float:
    """Best-of-3 matmul throughput in GFLOP/s for ``[m, k] @ [k, n]`` in ``dtype``."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b  # warm up (oneDNN picks its kernel on the first call)
    best = 0.0
    for _ in range(3):
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9)
    return best


if __name__ == "__main__":
    print(f"cpu reference: matmul fp32 {gflops(torch.float32):.0f} GFLOP/s, bf16 {gflops(torch.bfloat16):.0f} "
          f"GFLOP/s ({torch.get_num_threads()} threads)")
