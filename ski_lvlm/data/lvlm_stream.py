"""Instruction tuning from a stream (``data.streaming``): sets larger than memory, read row by row.

Why a second batch source next to :class:`~ski_lvlm.data.lvlm_dataset.LvlmDataset`: the map-style set checks
every record up front and groups batches by length, so it needs every record (and its token count) in
memory before step 1. A stream cannot: it reads each row when its batch is built. What that changes:

* **Order.** Rows are shuffled through a seeded buffer (``datasets``' ``IterableDataset.shuffle``, reseeded
  per epoch by ``set_epoch``), not permuted globally, and batches are not length-grouped.
* **Bad samples** are found when their batch is built: an error naming the record, or (``skip_bad``) a
  skip listed in :attr:`LvlmStream.skipped`, exactly as the map-style set words them.
* **Resume** is exact without state of its own: micro-batch ``k`` of an epoch is always rows
  ``[k * b * w, (k + 1) * b * w)`` of that epoch's shuffled order (``b`` the per-rank batch size, ``w`` the
  process count; rank ``r`` builds rows ``[r * b, (r + 1) * b)`` of each group), so resuming at micro-batch
  ``k`` skips ``k * b * w`` raw rows without tokenising or reading their features. A skipped bad row
  shrinks its batch instead of pulling in the next row.
* **Samples are identical.** Each row is checked and built by the same
  :class:`~ski_lvlm.data.lvlm_dataset.SampleBuilder`, with the row's index in the unshuffled set as the
  injection draw's index, so a record gives the same ids, labels, features and skeleton draw as in the
  map-style set (``tests/ski_lvlm/data/test_lvlm_stream.py``).
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, Callable, Iterator

from ski_lvlm.data.instruction_sets import to_records
from ski_lvlm.data.lvlm_dataset import SampleBuilder, SkippedSample
from ski_lvlm.models.lvlm.processing import LabelError

__all__ = ["LvlmStream", "first_records"]

INDEX_COLUMN = "_row"


def first_records(rows: Any, n: int) -> list[dict]:
    """The first ``n`` records of a (streaming) instruction set, in file order: what the feature statistics,
    the pre-alignment and the tokenizer corpus are fitted on when the whole set is not read."""
    return to_records(islice(iter(rows), n))


class LvlmStream:
    """Collated micro-batches of a streaming instruction set, epoch by epoch.

    Args:
        rows: a ``datasets.IterableDataset`` of ``RECORD_FEATURES`` rows
            (:func:`~ski_lvlm.data.instruction_sets.load_instruction_set` with ``streaming=True``, or a mixture).
        builder: checks and builds each sample (the map-style set's).
        batch_size: samples per micro-batch on each process.
        collate: ``lvlm_collate`` (with its pad id) or ``lvlm_pack_collate``.
        shuffle_buffer: rows in the shuffle buffer; 0 keeps the file order.
        seed: seeds the shuffle (``seed + epoch`` per epoch, by ``datasets``).
        rank, world_size: this process's slice of every group of ``batch_size * world_size`` rows.
        skip_bad: skip (and list) rows that cannot be built instead of raising.
        source: the file name in error messages.
    """

    def __init__(self, rows: Any, builder: SampleBuilder, *, batch_size: int, collate: Callable[[list], dict],
                 shuffle_buffer: int = 10_000, seed: int = 0, rank: int = 0, world_size: int = 1,
                 skip_bad: bool = False, source: str = "<stream>"):
        if batch_size < 1 or shuffle_buffer < 0 or not 0 <= rank < world_size:
            raise ValueError(f"batch_size {batch_size} >= 1, shuffle_buffer {shuffle_buffer} >= 0 and "
                             f"0 <= rank {rank} < world_size {world_size} are needed")
        # the row's index in the unshuffled set: the injection draw's index, as in the map-style set
        rows = rows.map(lambda _, i: {INDEX_COLUMN: i}, with_indices=True)
        self.rows = rows.shuffle(seed=seed, buffer_size=shuffle_buffer) if shuffle_buffer > 0 else rows
        self.builder, self.collate = builder, collate
        self.batch_size, self.rank, self.world = batch_size, rank, world_size
        self.skip_bad, self.source = skip_bad, source
        self.skipped: dict[int, SkippedSample] = {}  # by row index: a bad row is listed once, not once per epoch
        self.samples_seen = 0  # samples this process has built (a resumed run counts from its start)

    def _sample(self, row: dict, epoch: int) -> dict | None:
        i = int(row[INDEX_COLUMN])
        item = self.builder.check_or_skip(i, to_records([row])[0], skip_bad=self.skip_bad, source=self.source)
        if isinstance(item, SkippedSample):
            self.skipped[i] = item
            return None
        self.samples_seen += 1
        return self.builder.build(item, epoch)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[int, dict, bool]]:
        """(micro-batch index, collated batch, last of the epoch) of ``epoch``, from micro-batch ``start`` on.

        With several processes, a last group shorter than ``batch_size * world_size`` rows is dropped, so
        every process takes the same number of steps.
        """
        self.rows.set_epoch(epoch)
        it = iter(self.rows)
        g = self.batch_size * self.world
        deque(islice(it, start * g), maxlen=0)  # rows of the batches already trained on: not built
        group, bi = list(islice(it, g)), start
        if not group and start == 0:
            raise LabelError(f"{self.source}: the stream has no rows")
        while group and (self.world == 1 or len(group) == g):
            nxt = list(islice(it, g))
            last = not nxt or (self.world > 1 and len(nxt) < g)
            mine = group[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            samples = [s for s in (self._sample(r, epoch) for r in mine) if s is not None]
            if not samples:
                raise LabelError(f"{self.source}: every sample of micro-batch {bi} of epoch {epoch} (rank "
                                 f"{self.rank}) was skipped as bad; see the skipped samples listed so far")
            yield bi, self.collate(samples), last
            group, bi = nxt, bi + 1
