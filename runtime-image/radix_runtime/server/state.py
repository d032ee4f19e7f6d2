"""What the routes share: the engine (once loaded), the server's phase, metrics and stores."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from radix_runtime.chat_template import ChatTemplate
from radix_runtime.core.config import EngineConfig, ServerConfig
from radix_runtime.core.protocol import Engine, EngineStats
from radix_runtime.images import VisionSpec
from radix_runtime.server.conversations import ConversationStore
from radix_runtime.server.errors import APIError
from radix_runtime.server.metrics import ServerMetrics
from radix_runtime.server.requests import Limits
from radix_runtime.server.tool_calls import default_parser

LOADING, READY, DRAINING, FAILED = "loading", "ready", "draining", "failed"


@dataclass
class ServerState:
    server: ServerConfig
    config: EngineConfig
    phase: str = LOADING
    engine: Engine | None = None
    chat_template: ChatTemplate | None = None
    vision: VisionSpec | None = None  # image inputs of a vision-language model; None: text only
    load_error: str | None = None
    load_message: str = "starting"
    vocab_size: int = 0  # model's or tokenizer's, whichever is larger: token ids must be below
    started_at: float = field(default_factory=time.time)
    inflight: int = 0
    running_rids: set[str] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: ServerMetrics = None  # type: ignore[assignment]
    conversations: ConversationStore = None  # type: ignore[assignment]

    def __post_init__(self):
        self.idle.set()
        if self.metrics is None:
            self.metrics = ServerMetrics(self.served_model_name, self.stats,
                                         self.server.hit_rate_window_tokens)
        if self.conversations is None:
            self.conversations = ConversationStore(self.server.extend_max_conversations,
                                                   self.server.extend_ttl)

    @property
    def served_model_name(self) -> str:
        return self.server.served_model_name or self.config.model_path

    def stats(self) -> EngineStats | None:
        return self.engine.stats() if self.engine is not None and self.phase != FAILED else None

    def require_engine(self) -> Engine:
        """The engine, or the 503 a client should retry on."""
        if self.phase in (READY, DRAINING) and self.engine is not None:
            return self.engine  # while draining, the gate (server/app.py) decides who is still served
        if self.phase == DRAINING:
            raise APIError(503, "server is shutting down", retry_after=5)
        if self.phase == FAILED:
            raise APIError(503, f"model failed to load: {self.load_error}")
        raise APIError(503, f"model is still loading ({self.load_message})", retry_after=5)

    def tool_call_parser(self) -> str:
        """--tool-call-parser, else the format the chat template teaches."""
        if self.server.tool_call_parser:
            return self.server.tool_call_parser
        return default_parser(self.chat_template.source if self.chat_template else None)

    def limits(self) -> Limits:
        return Limits(self.require_engine().context_length, self.vocab_size)

    def enter(self, rid: str) -> None:
        if rid in self.running_rids:
            raise APIError(400, f"rid: request {rid!r} is already running", param="rid")
        self.running_rids.add(rid)
        self.inflight += 1
        self.idle.clear()

    def leave(self, rid: str) -> None:
        self.running_rids.discard(rid)
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()
