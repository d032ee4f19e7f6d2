"""Radix tree: match / insert / split / lock / evict, by example and as a hypothesis state machine
checked against a plain dict of cached prefixes."""
from __future__ import annotations

import torch
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from radix_runtime.cache.radix_tree import RadixTree


class Slots:
    """Hands out fresh slot numbers and records what the tree frees."""

    def __init__(self):
        self.next = 1
        self.freed: list[int] = []

    def new(self, n: int) -> torch.Tensor:
        out = torch.arange(self.next, self.next + n)
        self.next += n
        return out

    def free(self, t: torch.Tensor) -> None:
        self.freed += t.tolist()


def test_match_insert_split():
    s = Slots()
    tree = RadixTree(s.free)
    a = s.new(5)
    assert tree.insert([1, 2, 3, 4, 5], a) == 0
    slots, node = tree.match_prefix([1, 2, 3, 9])
    assert slots.tolist() == a[:3].tolist() and node.key == (1, 2, 3)  # split at the mismatch
    assert tree.match_prefix([1, 2, 3, 4, 5, 6])[0].tolist() == a.tolist()
    b = s.new(4)
    assert tree.insert([1, 2, 7, 8], b) == 2  # the first two were cached already
    assert tree.match_prefix([1, 2, 7, 8])[0].tolist() == a[:2].tolist() + b[2:].tolist()
    assert tree.match_prefix([9])[0].numel() == 0
    assert tree.total_size() == 7
    tree.check()


def test_lock_protects_and_lru_evicts_oldest_first():
    s = Slots()
    tree = RadixTree(s.free)
    old, new = s.new(3), s.new(3)
    tree.insert([1, 2, 3], old)
    tree.insert([4, 5, 6], new)
    tree.match_prefix([4, 5, 6])  # touch: [1,2,3] is now least recently used
    assert tree.evict(1) == 3 and s.freed == old.tolist()
    _, node = tree.match_prefix([4, 5, 6])
    tree.inc_lock(node)
    assert (tree.evictable_size, tree.protected_size) == (0, 3)
    assert tree.evict(10) == 0  # locked: nothing to evict
    tree.dec_lock(node)
    assert tree.evict(10) == 3 and tree.total_size() == 0
    tree.check()


def test_evict_frees_parent_after_children():
    s = Slots()
    tree = RadixTree(s.free)
    tree.insert([1, 2, 3, 4], s.new(4))
    tree.insert([1, 2, 5, 6], s.new(4))  # splits: [1,2] -> {[3,4], [5,6]}
    _, leaf = tree.match_prefix([1, 2, 3, 4])
    tree.inc_lock(leaf)  # locks [3,4] and its parent [1,2]
    assert tree.evict(100) == 2  # only [5,6]
    assert tree.match_prefix([1, 2, 3, 4])[0].numel() == 4
    tree.dec_lock(leaf)
    # slots 5, 6 were the second insert's duplicates of [1, 2]: the caller's to free, not the tree's
    assert tree.evict(100) == 4 and sorted(s.freed) == [1, 2, 3, 4, 7, 8] and not tree.root.children
    tree.check()


class TreeMachine(RuleBasedStateMachine):
    """Reference model: `cached` maps every cached prefix (tuple) to the slot of its last token.
    The tree must agree on every match, never free a locked slot, and free each slot once."""

    def __init__(self):
        super().__init__()
        self.slots = Slots()
        self.tree = RadixTree(self.slots.free)
        self.cached: dict[tuple, int] = {}
        self.locks: list = []  # (node, prefix) pairs currently locked

    keys = st.lists(st.integers(0, 3), min_size=1, max_size=12)

    def _sync_evicted(self):
        freed = set(self.slots.freed)
        self.cached = {k: v for k, v in self.cached.items() if v not in freed}

    @rule(key=keys)
    def insert(self, key):
        value = self.slots.new(len(key))
        existed = self.tree.insert(key, value)
        expect = 0
        while expect < len(key) and tuple(key[:expect + 1]) in self.cached:
            expect += 1
        assert existed == expect
        for i in range(existed, len(key)):
            self.cached[tuple(key[:i + 1])] = int(value[i])
        self.slots.freed += value[:existed].tolist()  # the caller frees its duplicates

    @rule(key=keys)
    def match(self, key):
        slots, node = self.tree.match_prefix(key)
        m = slots.numel()
        assert m == 0 or tuple(key[:m]) in self.cached
        assert m == len(key) or tuple(key[:m + 1]) not in self.cached
        assert slots.tolist() == [self.cached[tuple(key[:i + 1])] for i in range(m)]

    @rule(key=keys)
    def lock(self, key):
        slots, node = self.tree.match_prefix(key)
        if slots.numel():
            self.tree.inc_lock(node)
            self.locks.append((node, tuple(key[:slots.numel()])))

    @precondition(lambda self: self.locks)
    @rule(i=st.integers(0, 100))
    def unlock(self, i):
        node, _ = self.locks.pop(i % len(self.locks))
        self.tree.dec_lock(node)

    @rule(n=st.integers(0, 20))
    def evict(self, n):
        before = self.tree.evictable_size
        freed = self.tree.evict(n)
        assert freed >= min(n, before) or freed == before
        self._sync_evicted()
        for _, prefix in self.locks:  # locked prefixes survive
            assert all(prefix[:i + 1] in self.cached for i in range(len(prefix)))

    @invariant()
    def consistent(self):
        self.tree.check()
        assert self.tree.total_size() == len(self.cached)
        assert len(self.slots.freed) == len(set(self.slots.freed)), "a slot was freed twice"
        live = set(self.tree.all_slots().tolist())
        assert live == set(self.cached.values()) and not live & set(self.slots.freed)


TreeMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_tree_state_machine = TreeMachine.TestCase
