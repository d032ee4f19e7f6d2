"""Pure scheduling decisions, testable without a model: queue order, admission, retraction."""
from __future__ import annotations

from .request import Req

# Waiting this many scheduling rounds makes a request "starving": it then goes ahead of every
# better-matching request, in arrival order, so lpm cannot postpone it forever.
MAX_WAIT_ROUNDS = 64
# A waiting request sharing at least this many uncached tokens with one already being prefilled
# waits a round: next round that prefix is in the cache (SGLang's in-batch prefix deprioritizing).
IN_BATCH_PREFIX_MIN = 32
# Beyond this many waiting requests lpm degrades to fcfs (ordering needs a match per request).
LPM_MAX_QUEUE = 128
# Share of its remaining max_new_tokens a running request is expected to still need. Admission
# keeps that much KV free for running requests; underestimates are fixed by retraction. As in
# SGLang the ratio starts cautious, decays while nothing gets retracted, and resets on retraction.
INIT_NEW_TOKEN_RATIO = 0.7
MIN_NEW_TOKEN_RATIO = 0.1
NEW_TOKEN_RATIO_DECAY = 0.001  # per step


def order_queue(waiting: list[Req], policy: str, max_wait_rounds: int = MAX_WAIT_ROUNDS) -> list[Req]:
    """lpm: starving requests first (oldest first), then higher priority, then longest cached
    prefix (req.match_len, filled by the caller), then arrival. fcfs: priority, then arrival."""
    if policy == "fcfs":
        return sorted(waiting, key=lambda r: (-r.priority, r.arrival))
    return sorted(
        waiting,
        key=lambda r: (r.wait_steps < max_wait_rounds,
                       -r.priority if r.wait_steps < max_wait_rounds else 0,
                       -r.match_len if r.wait_steps < max_wait_rounds else 0,
                       r.arrival),
    )


def reserved_tokens(running: list[Req], ratio: float) -> int:
    """KV to keep aside for what running requests will still decode."""
    return int(sum(max(r.max_future_tokens() - r.remaining, 0) for r in running) * ratio)


def can_admit(extend_now: int, future: int, available: int, reserved: int, any_running: bool,
              ratio: float) -> bool:
    """available = free + evictable slots (after locking the candidate's own prefix).
    With nothing running, only the chunk itself has to fit, so the queue always makes progress."""
    if extend_now > available:
        return False
    if not any_running:
        return True
    return extend_now + int(max(future - extend_now, 0) * ratio) + reserved <= available


def retract_order(running: list[Req]) -> list[Req]:
    """Victims first: the least generated output (least work lost), then the longest prompt
    (most KV freed), then the newest."""
    return sorted(running, key=lambda r: (len(r.output_ids), -r.fill_len, -r.arrival))
