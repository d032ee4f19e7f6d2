"""Owns the model, the KV pool and the attention backend; runs one forward for a mixed batch.

The scheduler hands over a list of `SeqInput`s (new tokens + the sequence's whole slot list); the
runner lays them out decode-first (see ForwardBatch), runs the model once and returns the final
hidden state of each sequence's last token (plus every position's logits where input logprobs are
wanted). Everything model- and device-specific stays here and below. In a tensor/pipeline-parallel
group each rank has one over its shard, driven by group_runner.py.
"""
from __future__ import annotations

import time

import torch

from ..cache.kv_pool import KVPool
from ..core.config import EngineConfig, check_decode_graphs
from ..core.forward_batch import ExtendSeq, ForwardBatch, SeqInput
from ..layers.attention import make_backend
from ..layers.cpu_decode_attention import slot_rows
from .decode_graph import CompiledDecode, decode_model, supports


class ModelRunner:
    def __init__(self, model, pool: KVPool, device: torch.device, attention_backend: str | None = None,
                 config: EngineConfig | None = None):
        self.model, self.pool, self.device = model, pool, device
        scale = model.args.head_dim ** -0.5
        self.backend = make_backend(attention_backend, pool, scale, device)  # --attention-backend
        for attn in model.attention_layers():
            attn.backend = self.backend
        # seconds forward() spent around the model (batch preparation, picking the last rows):
        # the scheduler's step counters take them out of the model's share
        self.host_s = 0.0
        # decode-only batches at padded sizes, compiled or CUDA graphs (config's flags; None: eager)
        self.graphs = make_decode_graphs(config, model, device, attention_backend)
        if isinstance(self.graphs, CompiledDecode) and hasattr(self.backend, "use_cpu_kernel"):
            self.backend.use_cpu_kernel()  # its decode attention: the C kernel where it builds
        self._graph_out: tuple[torch.Tensor, torch.Tensor] | None = None  # (hidden, logits)

    def batch(self, seqs: list[SeqInput]) -> tuple[ForwardBatch, list[int]]:
        """The ForwardBatch of seqs (decode first) and the order its rows are in."""
        if all(len(s.token_ids) == 1 and not s.embeds for s in seqs):
            return self._decode_batch(seqs), list(range(len(seqs)))
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].token_ids) != 1)
        ids, pos, loc, extends, dec_slots, mm_rows, mm = [], [], [], [], [], [], []
        for i in order:
            s = seqs[i]
            n = len(s.token_ids)
            for j, e in s.embeds:
                mm_rows.extend(range(len(ids) + j, len(ids) + j + e.shape[0]))
                mm.append(e)
            if n == 1:
                dec_slots.append(s.kv_slots)
            else:
                extends.append(ExtendSeq(len(ids), n, s.kv_slots.to(self.device)))
            ids.extend(s.token_ids)
            pos.extend(range(s.start_pos, s.start_pos + n))
            loc.append(s.kv_slots[s.start_pos:])
        dev = self.device
        fb = ForwardBatch(
            input_ids=torch.tensor(ids, dtype=torch.long).clamp_(min=0).to(dev),  # image keys < 0
            positions=torch.tensor(pos, dtype=torch.long).to(dev),
            out_loc=torch.cat(loc).to(dev),
            num_decode=len(dec_slots),
            extends=extends,
        )
        if mm:
            fb.mm_index = torch.tensor(mm_rows, dtype=torch.long).to(dev)
            fb.mm_embeds = torch.cat(mm).to(dev)
        if dec_slots:
            lens = torch.tensor([s.numel() for s in dec_slots])
            table = torch.nn.utils.rnn.pad_sequence(dec_slots, batch_first=True, padding_value=0)
            fb.decode_table = table.to(dev)
            fb.decode_mask = (torch.arange(table.shape[1])[None, :] < lens[:, None]).to(dev)
        return fb, order

    def _decode_batch(self, seqs: list[SeqInput]) -> ForwardBatch:
        """batch() when every sequence decodes one token: whole-batch tensor ops, no per-sequence
        slicing (the new token's slot is the last of each slot list). For the CPU decode kernel
        the slot lists are handed over as they are, without a padded table."""
        dev = self.device
        pos = torch.tensor([s.start_pos for s in seqs], dtype=torch.long)
        if getattr(self.backend, "kernel", None) is not None:
            slots = [s.kv_slots for s in seqs]
            rows = slot_rows(slots)
            if rows is not None:
                return ForwardBatch(
                    input_ids=torch.tensor([s.token_ids[0] for s in seqs], dtype=torch.long),
                    positions=pos, out_loc=None, num_decode=len(seqs), decode_lens=pos + 1,
                    decode_rows=rows, decode_slots=slots)
        table = torch.nn.utils.rnn.pad_sequence([s.kv_slots for s in seqs], batch_first=True,
                                                padding_value=0)
        return ForwardBatch(
            input_ids=torch.tensor([s.token_ids[0] for s in seqs], dtype=torch.long).to(dev),
            positions=pos.to(dev),
            out_loc=table.gather(1, pos[:, None]).flatten().to(dev),
            num_decode=len(seqs),
            decode_table=table.to(dev),
            decode_mask=(torch.arange(table.shape[1])[None, :] <= pos[:, None]).to(dev),
        )

    def table_decode_batch(self, ids: torch.Tensor, pos: torch.Tensor, table: torch.Tensor,
                           rows: torch.Tensor, addr: torch.Tensor, new: torch.Tensor) -> ForwardBatch:
        """The decode batch of a scheduler's DecodeBatch (scheduler/decode_batch.py): input tokens
        ids [B] at positions pos [B], whose contexts are the first pos + 1 slots of rows `rows` of
        the slot table `table` (addr: those rows' addresses; new: the slots just appended, each
        row's last). What _decode_batch builds from SeqInputs, without a Python list per row."""
        if getattr(self.backend, "kernel", None) is not None:  # the C kernel reads the table rows
            return ForwardBatch(input_ids=ids, positions=pos, out_loc=None, num_decode=ids.shape[0],
                                decode_lens=pos + 1, decode_rows=addr)
        dev = self.device
        width = int(pos.max()) + 1
        mask = torch.arange(width)[None, :] <= pos[:, None]
        # a row's slots past its length are a former owner's: 0 there, as pad_sequence pads
        rows_table = table.index_select(0, rows)[:, :width].masked_fill_(~mask, 0)
        return ForwardBatch(
            input_ids=ids.to(dev), positions=pos.to(dev), out_loc=new.to(dev), num_decode=ids.shape[0],
            decode_table=rows_table.to(dev), decode_mask=mask.to(dev))

    @torch.inference_mode()
    def forward_decode(self, fb: ForwardBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """A decode-only batch (table_decode_batch) -> (final hidden [B, hidden], float32 logits
        [B, V]): through the decode graphs where a bucket holds it, else eager."""
        b = fb.num_decode
        bs = self.graphs.bucket(b) if self.graphs is not None else None
        if bs is not None:
            return self.graphs.run(fb, bs)
        hidden = self.model(fb)[:b]
        return hidden, self.model.logits(hidden)

    @torch.inference_mode()
    def forward(self, seqs: list[SeqInput]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """-> (last-token hidden states [B, hidden] in seqs order, {i: logits [n, V]} for seqs
        that asked for all positions)."""
        t0 = time.perf_counter()
        fb, order = self.batch(seqs)
        t1 = time.perf_counter()
        bs = self._graph_bucket(seqs, fb)
        self._graph_out = None
        if bs is not None:  # the LM head ran too: logits() hands its rows out
            self._graph_out = self.graphs.run(fb, bs)
            self.host_s += t1 - t0
            return self._graph_out[0], {}
        hidden = self.model(fb)
        t2 = time.perf_counter()
        out = self.outputs(seqs, order, hidden)
        self.host_s += (t1 - t0) + (time.perf_counter() - t2)
        return out

    def _graph_bucket(self, seqs: list[SeqInput], fb: ForwardBatch) -> int | None:
        """The decode graphs' bucket for this batch; None: run it eager (not decode-only, input
        logprobs wanted, or larger than the largest bucket)."""
        if (self.graphs is None or fb.num_decode != len(seqs) or fb.mm_index is not None
                or any(s.all_logits for s in seqs)):
            return None
        return self.graphs.bucket(len(seqs))

    def outputs(self, seqs: list[SeqInput], order: list[int], hidden: torch.Tensor):
        """The final hidden states [T, hidden] of batch(seqs) -> forward()'s result."""
        rows = [0] * len(seqs)  # seqs[i]'s last token's row in hidden
        full: dict[int, torch.Tensor] = {}
        off = 0
        for i in order:
            n = len(seqs[i].token_ids)
            rows[i] = off + n - 1
            if seqs[i].all_logits:
                full[i] = self.model.logits(hidden[off:off + n])
            off += n
        if rows == list(range(len(seqs))):  # all decodes, in order: no gather
            return hidden[:len(seqs)], full
        return hidden[torch.tensor(rows, device=hidden.device)], full

    @torch.inference_mode()
    def encode_images(self, pixels: list) -> list[torch.Tensor]:
        """Each image's pixel values ([C, H, W] arrays) -> its token embeddings [n, hidden]."""
        x = torch.stack([torch.as_tensor(p) for p in pixels]).to(self.device)
        return list(self.model.encode_images(x))

    @torch.inference_mode()
    def logits(self, last_hidden: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """float32 logits [len(rows), V] of those rows of forward()'s last-token hidden states."""
        if self._graph_out is not None and last_hidden is self._graph_out[0]:
            logits = self._graph_out[1]
            return logits if rows == list(range(logits.shape[0])) else logits[rows]
        return self.model.logits(last_hidden[rows])

    def close(self) -> None:
        """Nothing to release in one process (LeaderRunner tells its ranks to stop)."""


def make_decode_graphs(config: EngineConfig | None, model, device, attention_backend: str | None):
    """The decode runner the flags ask for: CUDA graphs (CUDA, --cuda-graph-max-bs given and no
    --disable-cuda-graph), else the compiled decode (--enable-torch-compile, any device), else None
    (eager). --cuda-graph-max-bs on CPU changes nothing, as in SGLang."""
    if config is None:
        return None
    check_decode_graphs(config)
    graphs = (torch.device(device).type == "cuda" and config.cuda_graph_max_bs is not None
              and not config.disable_cuda_graph)
    flag = "--cuda-graph-max-bs" if graphs else "--enable-torch-compile"
    if not (graphs or config.enable_torch_compile):
        return None
    if (why := supports(model)) is not None:
        raise ValueError(f"{flag}: {why}")
    if not graphs:
        return CompiledDecode(model, config.torch_compile_max_bs)
    if attention_backend != "triton":  # torch_native would gather the whole static page table
        raise ValueError("--cuda-graph-max-bs needs --attention-backend triton")
    from .cuda_graph import CudaGraphDecode  # GPU-only: imported when chosen

    lm = decode_model(model)
    max_ctx = config.context_length or lm.args.max_position_embeddings
    return CudaGraphDecode(model, device, config.cuda_graph_max_bs, max_ctx)
