"""spec.speculative: speculative decoding (docs/speculative-decoding.md), passed to the server as
SGLang's --speculative-* flags. The draft model has a path and, optionally, a volume of its own."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel, Rule
from .model import VOLUME_SOURCES, AbsPath, ModelVolume, exactly_one

Algorithm = Literal["STANDALONE", "NGRAM", "EAGLE", "EAGLE3", "NEXTN"]
RADIX_ALGORITHMS = ("STANDALONE", "NGRAM")  # the others need upstream SGLang (engine: sglang)
DRAFT_MOUNT = "/draft-model"


class DraftModelVolume(ModelVolume):
    """Volume that holds the draft model; mounted read-only into every pod. Set exactly one source."""

    mount_path: AbsPath = DRAFT_MOUNT
    """Where the volume appears inside the container (must differ from model.volume.mountPath)."""

    rules = (exactly_one("speculative.draftModel.volume", VOLUME_SOURCES),)


class DraftModel(ApiModel):
    """The draft model: smaller than the target, same tokenizer (--speculative-draft-model-path)."""

    path: Annotated[str, Field(min_length=1, max_length=1024)]
    """Draft model directory inside the pod (e.g. under draftModel.volume.mountPath), or a hub id
    upstream SGLang downloads itself."""
    volume: DraftModelVolume | None = None
    """Volume holding the draft's files; omit when they are in the image or on model.volume."""


class SpeculativeSpec(ApiModel):
    """Speculative decoding: a draft proposes tokens, the target verifies them in one forward pass;
    greedy output is unchanged and sampling keeps the target's distribution."""

    algorithm: Algorithm
    """--speculative-algorithm. STANDALONE: a smaller draft model; NGRAM: prompt lookup, no draft
    model. EAGLE, EAGLE3 and NEXTN need engine: sglang."""
    draft_model: DraftModel | None = None
    """The draft model; required by STANDALONE, EAGLE and EAGLE3, not used by NGRAM."""
    num_steps: Annotated[int, Field(ge=1, le=64)] | None = None
    """--speculative-num-steps: tokens the draft proposes per round."""
    eagle_topk: Annotated[int, Field(ge=1, le=64)] | None = None
    """--speculative-eagle-topk: draft branching; engine radix drafts one chain (1)."""
    num_draft_tokens: Annotated[int, Field(ge=2, le=256)] | None = None
    """--speculative-num-draft-tokens: tokens verified per round (with topk 1: numSteps + 1)."""

    rules = (
        Rule(
            cel="self.algorithm == 'NGRAM' || self.algorithm == 'NEXTN' || has(self.draftModel)",
            message="speculative.draftModel is required by STANDALONE, EAGLE and EAGLE3",
            check=lambda s: s.algorithm in ("NGRAM", "NEXTN") or s.draft_model is not None,
        ),
        Rule(
            cel="self.algorithm != 'NGRAM' || !has(self.draftModel)",
            message="speculative.draftModel is not used by NGRAM (it looks drafts up in the request's "
            "own tokens)",
            check=lambda s: s.algorithm != "NGRAM" or s.draft_model is None,
            field_path=".draftModel",
        ),
    )


def _draft_volume(s) -> DraftModelVolume | None:
    sp = s.speculative
    return sp.draft_model.volume if sp is not None and sp.draft_model is not None else None


# Checked on the whole spec (they involve the engine and the model's volume).
SPEC_RULES = (
    Rule(
        cel="!has(self.speculative) || (has(self.engine) && self.engine == 'sglang') || "
        + " || ".join(f"self.speculative.algorithm == '{a}'" for a in RADIX_ALGORITHMS),
        message="speculative.algorithm EAGLE, EAGLE3 and NEXTN need engine: sglang (the radix "
        "runtime implements STANDALONE and NGRAM)",
        check=lambda s: s.speculative is None or s.engine == "sglang" or s.speculative.algorithm in RADIX_ALGORITHMS,
        field_path=".speculative.algorithm",
    ),
    Rule(
        cel="!has(self.speculative) || !has(self.speculative.eagleTopk) || self.speculative.eagleTopk == 1 "
        "|| (has(self.engine) && self.engine == 'sglang')",
        message="speculative.eagleTopk must be 1 with engine: radix (it drafts one chain; tree "
        "drafting needs engine: sglang)",
        check=lambda s: s.speculative is None or s.speculative.eagle_topk in (None, 1) or s.engine == "sglang",
        field_path=".speculative.eagleTopk",
    ),
    Rule(
        cel="!has(self.speculative) || !has(self.speculative.draftModel) || "
        "!has(self.speculative.draftModel.volume) || !has(self.model.volume) || "
        "self.speculative.draftModel.volume.mountPath != self.model.volume.mountPath",
        message="speculative.draftModel.volume.mountPath must differ from model.volume.mountPath",
        check=lambda s: (v := _draft_volume(s)) is None or s.model.volume is None
        or v.mount_path != s.model.volume.mount_path,
        field_path=".speculative.draftModel.volume.mountPath",
    ),
)
