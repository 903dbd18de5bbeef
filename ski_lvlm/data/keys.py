"""The id of a sample in feature caches, shared by feature extraction, the data tools and training.

Why one function: ``ski-lvlm data features`` writes a cache under these ids and ``train lvlm`` looks the
same samples up again; two rules (there used to be two) would make a cache silently miss. Caches written
before this module existed use the same ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

__all__ = ["sample_key"]


def sample_key(record: Mapping[str, Any]) -> str:
    """The file stem of the record's ``video_path``, else of its ``skeleton_path``, else its ``id``.

    ``videos/S001C001P001R001A001.mp4`` -> ``S001C001P001R001A001``; records that share a video share a key
    (several QA records about one clip read one cache entry).

    Raises:
        ValueError: the record has no path and no id.
    """
    path = record.get("video_path") or record.get("skeleton_path")
    if path:
        return Path(path).stem
    if record.get("id") is None:
        raise ValueError("a sample needs a video path, a skeleton path or an id to be found in a feature cache")
    return str(record["id"])
