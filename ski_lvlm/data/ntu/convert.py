"""``.skeleton`` files -> one npz (``x_train, y_train, x_test, y_test, files_train, files_test``).

:func:`convert_ntu` reads the files in parallel, caches per-chunk results in a sidecar folder so a killed run
resumes, and assembles x float32 ``[N, 3, T, 25, 2]``, y int64 = action id - 1, files = sample names.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ski_lvlm.data.ntu.names import is_train_sample, parse_ntu_name
from ski_lvlm.data.ntu.normalize import align_view, center_on_spine, temporal_resample
from ski_lvlm.data.skeleton import SkeletonFormatError, read_ntu_skeleton

__all__ = ["ConvertOptions", "convert_ntu"]


@dataclass(frozen=True)
class ConvertOptions:
    benchmark: str = "xsub"
    frames: int = 300
    sampling: str = "pad300"
    center_spine: bool = False
    align_view: bool = False
    max_bodies: int = 2
    seed: int = 0  # random_crop: each file gets its own generator from (seed, name)

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def _process_one(path: str, opts: ConvertOptions) -> tuple[np.ndarray, bool]:
    """One file -> (x [3, frames, 25, M], truncated?)."""
    x = read_ntu_skeleton(path, max_bodies=opts.max_bodies)
    if opts.center_spine:
        x = center_on_spine(x)
    if opts.align_view:
        x = align_view(x)
    name = Path(path).name.split(".")[0]
    rng = None
    if opts.sampling == "random_crop":
        seed = int.from_bytes(hashlib.sha256(f"{opts.seed}:{name}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
    cut = opts.sampling == "pad300" and x.shape[1] > opts.frames
    return temporal_resample(x, opts.frames, opts.sampling, rng), cut


def _convert_chunk(job: tuple[int, list[str], ConvertOptions, str, bool]) -> dict:
    """Worker: convert one chunk of files and write ``parts/chunk_XXXXX.npz`` atomically."""
    k, paths, opts, parts_dir, skip_bad = job
    xs, names, bad, cut = [], [], [], 0
    for p in paths:
        try:
            x, was_cut = _process_one(p, opts)
        except (SkeletonFormatError, OSError) as e:
            if not skip_bad:
                raise
            bad.append((p, str(e)))
            continue
        xs.append(x)
        names.append(Path(p).name.split(".")[0])
        cut += was_cut
    shape = (0, 3, opts.frames, 25, opts.max_bodies)
    arr = np.stack(xs) if xs else np.zeros(shape, np.float32)
    final = Path(parts_dir) / f"chunk_{k:05d}.npz"
    tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=arr, names=np.array(names, dtype="U32"),
             bad=np.array([json.dumps(b) for b in bad], dtype=str),
             cut=np.array(cut))
    os.replace(tmp, final)
    return {"chunk": k, "files": len(paths)}


def _open_cache(parts: Path, manifest: dict) -> None:
    """Keep ``parts/`` only when its ``cache.json`` matches ``manifest`` (same options, chunking and files);
    otherwise discard the stale chunks. Then (re)write ``cache.json``."""
    mf = parts / "cache.json"
    if parts.exists():
        try:
            old = json.loads(mf.read_text())
        except (OSError, ValueError):
            old = None
        if old != manifest:
            import shutil

            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    mf.write_text(json.dumps(manifest))


def _run_jobs(jobs: list[tuple], workers: int, on_chunk: Callable[[int], None]) -> None:
    """Run the chunk jobs in this process or a process pool; ``on_chunk(files)`` after each finished chunk."""
    import multiprocessing as mp

    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            on_chunk(_convert_chunk(j)["files"])
        return
    # a process pool that reports a dead worker (OOM kill, segfault) instead of waiting forever
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context()) as ex:
        futures = [ex.submit(_convert_chunk, j) for j in jobs]
        try:
            for fut in as_completed(futures):
                on_chunk(fut.result()["files"])
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _assemble(chunk_files: list[Path], opts: ConvertOptions, out: Path) -> dict:
    """Gather the chunks into the npz at ``out`` (written atomically), split by ``opts.benchmark``.

    Counts first, then fills preallocated arrays, so peak memory is the output arrays. Returns the
    train/test counts, the bad files and the number of truncated samples.
    """
    names_all, bad, cut = [], [], 0
    for path in chunk_files:
        with np.load(path) as z:
            names_all.extend(z["names"].tolist())
            bad.extend(json.loads(b) for b in z["bad"].tolist())
            cut += int(z["cut"])
    parsed = [parse_ntu_name(n) for n in names_all]
    train_mask = np.array([is_train_sample(p, opts.benchmark) for p in parsed], bool)
    shape = (3, opts.frames, 25, opts.max_bodies)
    x_train = np.zeros((int(train_mask.sum()),) + shape, np.float32)
    x_test = np.zeros((int((~train_mask).sum()),) + shape, np.float32)
    pos_train = np.cumsum(train_mask) - 1  # row i's position in its own split
    pos_test = np.cumsum(~train_mask) - 1
    i = 0
    for path in chunk_files:
        with np.load(path) as z:
            xs = z["x"]
        for row in xs:
            if train_mask[i]:
                x_train[pos_train[i]] = row
            else:
                x_test[pos_test[i]] = row
            i += 1
    names_arr = np.array(names_all, dtype="U32")
    labels = np.array([p.label for p in parsed], np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        x_train=x_train, y_train=labels[train_mask], files_train=names_arr[train_mask],
        x_test=x_test, y_test=labels[~train_mask], files_test=names_arr[~train_mask],
    )
    os.replace(tmp, out)
    return {"train": int(train_mask.sum()), "test": int((~train_mask).sum()), "bad": bad, "cut": cut}


def convert_ntu(
    files: Sequence[str | Path],
    out: str | Path,
    opts: ConvertOptions,
    *,
    workers: int = 1,
    chunk_size: int = 64,
    skip_bad: bool = False,
    keep_parts: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Convert ``.skeleton`` files to one npz at ``out``; resumable through ``<out>.parts/``.

    The (sorted) file list is cut into chunks; each finished chunk is saved in the sidecar folder, and a
    rerun with the same files and options only converts the missing chunks. Options or file lists that
    differ from the cached run make the stale cache be discarded.

    ``progress(n)`` is called with the number of files finished so far (cached chunks count at once).
    Returns a summary dict (counts, files/s, bad files, truncated count).

    Raises:
        SkeletonFormatError: a malformed file when ``skip_bad`` is False.
    """
    out = Path(out)
    files = sorted(str(f) for f in files)
    parts = out.with_name(out.name + ".parts")
    _open_cache(parts, {"options": opts.key(), "chunk_size": chunk_size,
                        "files": hashlib.sha256("\n".join(files).encode()).hexdigest()})

    chunks = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    chunk_files = [parts / f"chunk_{k:05d}.npz" for k in range(len(chunks))]
    todo = [k for k in range(len(chunks)) if not chunk_files[k].exists()]
    done_files = sum(len(chunks[k]) for k in range(len(chunks)) if k not in set(todo))
    if progress:
        progress(done_files)
    t0 = time.perf_counter()
    new_files = 0

    def on_chunk(n: int) -> None:
        nonlocal new_files
        new_files += n
        if progress:
            progress(done_files + new_files)

    _run_jobs([(k, chunks[k], opts, str(parts), skip_bad) for k in todo], workers, on_chunk)
    elapsed = time.perf_counter() - t0
    result = _assemble(chunk_files, opts, out)
    if not keep_parts:
        import shutil

        shutil.rmtree(parts, ignore_errors=True)
    return {
        "files": len(files),
        "converted_now": new_files,
        "from_cache": done_files,
        "train": result["train"],
        "test": result["test"],
        "bad": result["bad"],
        "truncated_to_frames": result["cut"],
        "seconds": elapsed,
        "files_per_s": new_files / elapsed if elapsed > 0 and new_files else 0.0,
    }
