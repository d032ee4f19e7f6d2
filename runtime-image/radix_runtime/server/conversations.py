"""Token history of conversations for /extend, bounded in count (LRU) and age (TTL).

Only token ids are kept here; the KV for them lives (or not) in the radix cache, so a continuation
sends the whole history again and the cache turns it into a prefix hit.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable


class ConversationStore:
    def __init__(self, max_conversations: int = 1024, ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_conversations = max_conversations
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, list[int]]] = OrderedDict()

    def put(self, rid: str, token_ids: list[int]) -> None:
        if self.max_conversations <= 0:
            return
        self._items[rid] = (self._clock(), list(token_ids))
        self._items.move_to_end(rid)
        self._expire()
        while len(self._items) > self.max_conversations:
            self._items.popitem(last=False)

    def get(self, rid: str) -> list[int] | None:
        self._expire()
        item = self._items.get(rid)
        if item is None:
            return None
        # Touching renews the TTL, which keeps the dict ordered by last use.
        self._items[rid] = (self._clock(), item[1])
        self._items.move_to_end(rid)
        return list(item[1])

    def __len__(self) -> int:
        self._expire()
        return len(self._items)

    def _expire(self) -> None:
        # Oldest-touched first, so expiry stops at the first live entry.
        deadline = self._clock() - self.ttl_s
        while self._items:
            rid, (touched, _) = next(iter(self._items.items()))
            if touched >= deadline:
                break
            self._items.popitem(last=False)
