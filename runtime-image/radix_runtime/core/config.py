"""What launch_server's flags decide, typed: `EngineConfig` for the engine, `ServerConfig` for the
HTTP server. Built once from the flags (launch_server.py); the defaults here are the flags'
defaults. SGLang's flag names in the comments."""
from __future__ import annotations

from dataclasses import dataclass

DTYPES = ("float32", "float16", "bfloat16")
DTYPE_ALIASES = {"half": "float16", "float": "float32"}  # SGLang's --dtype accepts these too
ATTENTION_BACKENDS = ("torch_native", "triton")  # SGLang's names for the two we implement


@dataclass
class EngineConfig:
    model_path: str  # --model-path
    tokenizer_path: str | None = None  # --tokenizer-path
    dtype: str = "auto"  # --dtype: auto|float32|float16|bfloat16 (aliases resolved here)
    device: str = "auto"  # --device: auto|cpu|cuda
    attention_backend: str | None = None  # --attention-backend: torch_native|triton (default: torch_native)
    context_length: int | None = None  # --context-length (default: the model's)
    page_size: int = 1  # --page-size
    max_total_tokens: int | None = None  # --max-total-tokens (KV pool size)
    mem_fraction_static: float | None = None  # --mem-fraction-static
    max_running_requests: int = 256  # --max-running-requests
    max_queued_requests: int = 4096  # --max-queued-requests (beyond: QueueFullError -> 503)
    chunked_prefill_size: int = 2048  # --chunked-prefill-size
    max_prefill_tokens: int = 8192  # --max-prefill-tokens
    schedule_policy: str = "lpm"  # --schedule-policy: lpm|fcfs
    disable_radix_cache: bool = False  # --disable-radix-cache
    random_seed: int = 0  # --random-seed
    tp_size: int = 1  # --tp-size
    pp_size: int = 1  # --pp-size
    grammar_backend: str = "xgrammar"  # --grammar-backend (xgrammar is the only one)
    # decode at padded batch sizes (executor/decode_graph.py); both opt-in, unlike SGLang, whose
    # CUDA graphs are on by default: ours have not run on a GPU yet
    enable_torch_compile: bool = False  # --enable-torch-compile (CPU: compiled decode regions)
    torch_compile_max_bs: int = 32  # --torch-compile-max-bs (larger decode batches run eager)
    cuda_graph_max_bs: int | None = None  # --cuda-graph-max-bs (CUDA graphs up to it; None: off)
    disable_cuda_graph: bool = False  # --disable-cuda-graph
    # scheduler/overlap.py; opt-in, unlike SGLang's (on unless --disable-overlap-schedule)
    enable_overlap_schedule: bool = False  # --enable-overlap-schedule / --disable-overlap-schedule
    # speculative decoding (core/spec_config.py resolves and checks these; docs/speculative-decoding.md)
    speculative_algorithm: str | None = None  # --speculative-algorithm: STANDALONE|NGRAM
    speculative_draft_model_path: str | None = None  # --speculative-draft-model-path
    speculative_num_steps: int | None = None  # --speculative-num-steps
    speculative_eagle_topk: int | None = None  # --speculative-eagle-topk (1: a chain)
    speculative_num_draft_tokens: int | None = None  # --speculative-num-draft-tokens
    speculative_ngram_min_match_window_size: int = 1  # --speculative-ngram-min-match-window-size
    speculative_ngram_max_match_window_size: int = 12  # --speculative-ngram-max-match-window-size
    speculative_accept_threshold_single: float = 1.0  # --speculative-accept-threshold-single
    speculative_accept_threshold_acc: float = 1.0  # --speculative-accept-threshold-acc

    def __post_init__(self):
        self.dtype = DTYPE_ALIASES.get(self.dtype, self.dtype)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"  # --host
    port: int = 30000  # --port (SGLang's default)
    api_key: str | None = None  # --api-key
    served_model_name: str | None = None  # --served-model-name (default: --model-path)
    chat_template: str | None = None  # --chat-template
    log_requests: bool = False  # --log-requests
    watchdog_timeout: float = 300.0  # --watchdog-timeout
    shutdown_timeout: float = 30.0  # --shutdown-timeout
    health_generate_timeout: float = 20.0  # --health-generate-timeout
    extend_max_conversations: int = 1024  # --extend-max-conversations
    extend_ttl: float = 3600.0  # --extend-ttl
    hit_rate_window_tokens: int = 1 << 18  # --hit-rate-window-tokens
    tool_call_parser: str | None = None  # --tool-call-parser (default: from the chat template)


def check_decode_graphs(cfg: EngineConfig) -> None:
    """ValueError naming the flag when a decode-graph flag has an impossible value."""
    if cfg.torch_compile_max_bs < 1:
        raise ValueError(f"--torch-compile-max-bs {cfg.torch_compile_max_bs}: must be >= 1")
    if cfg.cuda_graph_max_bs is not None and cfg.cuda_graph_max_bs < 1:
        raise ValueError(f"--cuda-graph-max-bs {cfg.cuda_graph_max_bs}: must be >= 1 "
                         "(--disable-cuda-graph turns the graphs off)")
