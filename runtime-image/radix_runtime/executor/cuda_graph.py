"""--cuda-graph-max-bs: the decode forward captured as one CUDA graph per bucket and replayed.

Imported only on CUDA. Each bucket's graph runs the whole model on `StaticDecodeInputs`' buffers:
embedding, layers (the Triton decode kernel reads the static page table and lengths, so nothing
in the graph depends on a host value), final norm and the LM head; its hidden states and logits
stay in the graph's output buffers, overwritten by the next replay. The scheduler's greedy
argmax then runs on those logits on the GPU and copies back only the token ids.

Graphs are captured at start, largest bucket first, sharing one memory pool (a smaller graph
reuses the larger one's memory); each is warmed up on the capture stream first (Triton compiles
its kernels, the allocator settles). Not yet run on a GPU.
"""
from __future__ import annotations

import logging
import time

import torch

from ..core.forward_batch import ForwardBatch
from .decode_graph import StaticDecodeInputs, bucket_for, capture_sizes, decode_model

log = logging.getLogger(__name__)

_WARMUPS = 2


class CudaGraphDecode:
    def __init__(self, model, device: torch.device, max_bs: int, max_ctx: int):
        self.lm = decode_model(model)
        self.sizes = capture_sizes(max_bs)
        self.inputs = StaticDecodeInputs(max_bs, max_ctx, device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        t0 = time.perf_counter()
        self._capture()
        log.info("captured %d decode CUDA graphs (batch sizes %s) in %.1f s", len(self.sizes),
                 self.sizes, time.perf_counter() - t0)

    def bucket(self, n: int) -> int | None:
        return bucket_for(n, self.sizes)

    def _step(self, fb: ForwardBatch):
        hidden = self.lm(fb)
        return hidden, self.lm.logits(hidden)

    @torch.inference_mode()
    def _capture(self) -> None:
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        for bs in reversed(self.sizes):
            fb = self.inputs.batch(bs)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(_WARMUPS):
                    self._step(fb)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                self.outputs[bs] = self._step(fb)
            self.graphs[bs] = graph
        torch.cuda.synchronize()

    def run(self, fb: ForwardBatch, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """fb: a decode-only batch of B <= bs rows -> (hidden [B, hidden], logits [B, V]), views of
        the graph's output buffers (valid until the next run)."""
        self.inputs.fill(fb, bs)
        self.graphs[bs].replay()
        hidden, logits = self.outputs[bs]
        return hidden[:fb.num_decode], logits[:fb.num_decode]
