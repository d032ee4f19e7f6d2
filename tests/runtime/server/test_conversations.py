"""/extend's conversation store: bounded by count (LRU) and by age (TTL)."""
from radix_runtime.server.conversations import ConversationStore


def test_lru_and_ttl():
    now = [0.0]
    store = ConversationStore(max_conversations=2, ttl_s=10, clock=lambda: now[0])
    store.put("a", [1])
    store.put("b", [2])
    assert store.get("a") == [1]  # a is now the most recently used
    store.put("c", [3])
    assert store.get("b") is None and store.get("a") == [1] and store.get("c") == [3]
    now[0] = 5
    store.get("c")
    now[0] = 12  # a was last used at 0, c at 5
    assert store.get("a") is None and store.get("c") == [3]
    now[0] = 30
    assert len(store) == 0
