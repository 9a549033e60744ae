"""The prefix cache of one simulated pod: KV blocks keyed by a trace's block hashes.

vLLM (automatic prefix caching) and SGLang (RadixAttention) reuse the KV cache of a prompt's
leading tokens when an earlier prompt on the same engine had the same prefix. The Mooncake trace
gives each prompt's 512-token blocks as prefix-chained hash ids (equal id = identical prefix up
to and including that block), so a hit is the leading run of a prompt's blocks already cached.
Capacity is the pod's KV cache in blocks; the least recently used block is evicted first, as
both engines do with blocks no running request holds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    """An LRU set of block hash ids of bounded size (`capacity_blocks`)."""

    __slots__ = ("_blocks", "capacity_blocks")

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity_blocks = max(0, capacity_blocks)
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup_and_insert(self, blocks: Sequence[int]) -> int:
        """Number of leading `blocks` already cached; then caches all of them as most recent.

        Later blocks after the first miss are not hits even if present: a prefix cache can
        only reuse a contiguous prefix.
        """
        cache = self._blocks
        hits = 0
        for block in blocks:
            if block not in cache:
                break
            hits += 1
        for block in blocks:
            if block in cache:
                cache.move_to_end(block)
            else:
                cache[block] = None
        while len(cache) > self.capacity_blocks:
            cache.popitem(last=False)
        return hits

    def clear(self) -> None:
        self._blocks.clear()
