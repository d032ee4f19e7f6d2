"""The radix tree over token ids (RadixAttention). Each node owns the KV slots of its key tokens.

- match_prefix: longest cached prefix of a token sequence -> its slots (the canonical copies every
  request sharing that prefix reads) and the deepest node, splitting a node when the match ends
  inside it so the match always ends on a node boundary (that node is what a request locks).
- insert: add a sequence and its slots; returns how many leading tokens were already cached: the
  caller frees its own slots for those (duplicates) and uses the tree's instead.
- lock counts: inc_lock/dec_lock on a node count for it and all its ancestors; a locked node is in
  use by a running request and never evicted.
- evict: free least-recently-used unlocked leaves until enough slots came back.

The tree knows nothing of requests or the model; `free_slots` is the pool's free function.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Callable, Sequence

import torch

_EMPTY = torch.empty(0, dtype=torch.int64)


class TreeNode:
    __slots__ = ("key", "value", "children", "parent", "lock_ref", "last_access")

    def __init__(self, key: tuple = (), value: torch.Tensor = _EMPTY, parent: "TreeNode | None" = None):
        self.key = key
        self.value = value
        self.children: dict[int, TreeNode] = {}
        self.parent = parent
        self.lock_ref = 0
        self.last_access = 0

    def __lt__(self, other: "TreeNode") -> bool:  # heap order for eviction
        return self.last_access < other.last_access


def _common_len(a: tuple, b: tuple) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i


class RadixTree:
    def __init__(self, free_slots: Callable[[torch.Tensor], None] | None = None):
        self.free_slots = free_slots or (lambda slots: None)
        self._clock = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.root = TreeNode()
        self.root.lock_ref = 1  # the root is never evicted
        self.evictable_size = 0  # slots in unlocked nodes
        self.protected_size = 0  # slots in locked nodes

    def total_size(self) -> int:
        return self.evictable_size + self.protected_size

    # -- lookup -------------------------------------------------------------------------------
    def match_prefix(self, key: Sequence[int]) -> tuple[torch.Tensor, TreeNode]:
        key = tuple(key)
        node, i, values = self.root, 0, []
        now = next(self._clock)
        node.last_access = now
        while i < len(key):
            child = node.children.get(key[i])
            if child is None:
                break
            n = _common_len(child.key, key[i:i + len(child.key)])
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access = now
            values.append(child.value)
            node, i = child, i + n
        slots = torch.cat(values) if values else _EMPTY
        return slots, node

    def _split(self, child: TreeNode, n: int) -> TreeNode:
        """Cut child's key after n tokens; returns the new upper node (which owns the first n)."""
        upper = TreeNode(child.key[:n], child.value[:n], child.parent)
        upper.lock_ref, upper.last_access = child.lock_ref, child.last_access
        upper.children = {child.key[n]: child}
        child.parent.children[child.key[0]] = upper
        child.parent = upper
        child.key, child.value = child.key[n:], child.value[n:]
        return upper

    # -- insertion ----------------------------------------------------------------------------
    def insert(self, key: Sequence[int], value: torch.Tensor) -> int:
        """Cache key -> value (slots); returns the length of the prefix that was already cached
        (the caller's slots for it are duplicates now and are the caller's to free)."""
        key = tuple(key)
        assert len(key) == value.numel(), (len(key), value.numel())
        node, i = self.root, 0
        now = next(self._clock)
        while i < len(key):
            child = node.children.get(key[i])
            if child is None:
                leaf = TreeNode(key[i:], value[i:].clone(), node)
                leaf.last_access = now
                node.children[key[i]] = leaf
                self.evictable_size += len(leaf.key)
                return i
            n = _common_len(child.key, key[i:i + len(child.key)])
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access = now
            node, i = child, i + n
        return i

    # -- locking ------------------------------------------------------------------------------
    def inc_lock(self, node: TreeNode) -> None:
        while node is not self.root:
            if node.lock_ref == 0:
                self.evictable_size -= len(node.key)
                self.protected_size += len(node.key)
            node.lock_ref += 1
            node = node.parent

    def dec_lock(self, node: TreeNode) -> None:
        while node is not self.root:
            assert node.lock_ref > 0, "unbalanced dec_lock"
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self.evictable_size += len(node.key)
                self.protected_size -= len(node.key)
            node = node.parent

    # -- eviction -----------------------------------------------------------------------------
    def evict(self, num_slots: int) -> int:
        """Free at least num_slots (fewer if the unlocked part is smaller); returns the number."""
        if num_slots <= 0:
            return 0
        heap = [n for n in self._leaves() if n.lock_ref == 0]
        heapq.heapify(heap)
        freed = 0
        while freed < num_slots and heap:
            leaf = heapq.heappop(heap)
            self.free_slots(leaf.value)
            freed += len(leaf.key)
            self.evictable_size -= len(leaf.key)
            parent = leaf.parent
            del parent.children[leaf.key[0]]
            if parent is not self.root and not parent.children and parent.lock_ref == 0:
                heapq.heappush(heap, parent)
        return freed

    def _leaves(self):
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            elif node is not self.root:
                yield node

    def all_slots(self) -> torch.Tensor:
        stack, out = [self.root], []
        while stack:
            node = stack.pop()
            out.append(node.value)
            stack.extend(node.children.values())
        return torch.cat(out)

    def check(self) -> None:
        """Recount sizes and lock invariants from scratch (tests, Scheduler.check_integrity)."""
        stack, ev, pr = list(self.root.children.values()), 0, 0
        while stack:
            node = stack.pop()
            assert len(node.key) == node.value.numel() > 0
            assert node.lock_ref >= 0
            assert node.lock_ref >= max((c.lock_ref for c in node.children.values()), default=0)
            for first, c in node.children.items():
                assert c.parent is node and c.key[0] == first
            if node.lock_ref:
                pr += len(node.key)
            else:
                ev += len(node.key)
            stack.extend(node.children.values())
        assert (ev, pr) == (self.evictable_size, self.protected_size), (ev, pr, self.evictable_size, self.protected_size)
