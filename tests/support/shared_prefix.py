"""The shared-prefix workload of the benchmark and the server's hit-rate test: G groups of R
requests; every request of a group starts with the group's P-token prefix and ends with its own
S-token suffix. Token ids are drawn directly (no tokenizer), so prompt lengths and prefix sharing
are exact."""
from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_ID = 5  # tiny checkpoints put their special tokens below this


@dataclass(frozen=True)
class SharedPrefix:
    groups: int = 16
    per_group: int = 8
    prefix_len: int = 512
    suffix_len: int = 32
    vocab_size: int = 700
    seed: int = 0

    def prompts(self) -> list[list[list[int]]]:
        """[group][request] -> input ids. Group prefixes differ in their first token, so groups
        share nothing with each other."""
        rng = random.Random(self.seed)
        ids = range(FIRST_ID, self.vocab_size)
        firsts = rng.sample(ids, self.groups)
        out = []
        for g in range(self.groups):
            prefix = [firsts[g]] + rng.choices(ids, k=self.prefix_len - 1)
            out.append([prefix + rng.choices(ids, k=self.suffix_len)
                        for _ in range(self.per_group)])
        return out


def lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def ideal_cached(prompt: list[int], seen: list[list[int]]) -> int:
    """Tokens of `prompt` an unbounded prefix cache holding the `seen` sequences could serve.
    At least one prompt token is always computed (its logits start the output)."""
    best = max((lcp(prompt, s) for s in seen), default=0)
    return min(best, len(prompt) - 1)
