"""Write a tiny random-weight HF-format checkpoint with a real byte-level BPE tokenizer.

Tests (ours and the server's) serve these; HF transformers loads the same directory as the
correctness oracle. `python -m radix_runtime.tiny_model --out DIR [--arch llama|qwen2|qwen3]`.
"""
from __future__ import annotations

import argparse
import json
import os

# A little English, code and chat so the BPE learns common merges and prompts tokenize compactly.
_CORPUS = """
The quick brown fox jumps over the lazy dog. A radix tree shares the common prefix of many keys,
so requests that start with the same system prompt reuse the same cached attention keys and values.
Large language models generate text one token at a time. Each new token attends to every earlier
token, and the server keeps their keys and values in a paged memory pool on the accelerator.
Kubernetes runs containers in pods; a deployment keeps a number of replicas running, and a service
routes traffic to the ready ones. The operator watches its custom resources and reconciles them.
def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
import torch
x = torch.randn(4, 8)
print("hello, world!", x.sum())
You are a helpful assistant. Answer the question briefly and honestly.
User: What is the capital of France? Assistant: The capital of France is Paris.
User: Write a haiku about autumn. Assistant: Red leaves drift slowly, the cold wind hums in the pines,
the year exhales light.
Once upon a time there was a little robot who wanted to learn how to paint the sea at night.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 3.14159 42.
Questions, answers, lists and tables: one, two, three; alpha, beta, gamma; red, green, blue.
"""

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_ARCHS = {
    "llama": ("LlamaForCausalLM", "llama"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
    "qwen3": ("Qwen3ForCausalLM", "qwen3"),
}


def build_tokenizer(vocab_size: int = 768):
    """Byte-level BPE trained on the embedded corpus; BOS prepended like Llama 3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos)]
    )
    return tok


def write_tiny_model(
    out_dir: str,
    arch: str = "llama",
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 2048,
    vocab_size: int = 768,
    tie_word_embeddings: bool | None = None,
    rope_scaling: dict | None = None,
    init_std: float = 0.25,
) -> str:
    import torch
    from safetensors.torch import save_file

    if arch not in _ARCHS:
        raise ValueError(f"arch must be one of {sorted(_ARCHS)}")
    os.makedirs(out_dir, exist_ok=True)
    tok = build_tokenizer(vocab_size)
    vocab = tok.get_vocab_size()
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    eos_ids = [ids["<|eos|>"], ids["<|im_end|>"]]

    head_dim = hidden_size // num_heads
    tie = (arch != "llama") if tie_word_embeddings is None else tie_word_embeddings
    architecture, model_type = _ARCHS[arch]
    config = {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": vocab,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": tie,
        "bos_token_id": ids["<|bos|>"],
        "eos_token_id": eos_ids,
        "pad_token_id": ids["<|pad|>"],
        "torch_dtype": "float32",
        "attention_bias": False,
        "use_cache": True,
    }
    if arch == "qwen2":
        config.update(use_sliding_window=False, sliding_window=None, max_window_layers=num_layers)
    if arch == "qwen3":
        config.update(use_sliding_window=False, sliding_window=None, max_window_layers=num_layers)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": ids["<|bos|>"], "eos_token_id": eos_ids,
                   "pad_token_id": ids["<|pad|>"], "do_sample": False}, f, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>",
            "add_bos_token": True, "model_max_length": max_position_embeddings,
            "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
        }, f, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}, f)

    # A wide init (std 0.25 instead of 0.02) makes logits peaked enough that different prompts
    # produce different greedy continuations and argmax ties are practically impossible.
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=init_std):
        return (torch.randn(*shape, generator=g) * std).contiguous()

    def norm_w(n):
        return (1.0 + 0.1 * torch.randn(n, generator=g)).contiguous()

    q_out, kv_out = num_heads * head_dim, num_kv_heads * head_dim
    w = {"model.embed_tokens.weight": rnd(vocab, hidden_size, std=1.0), "model.norm.weight": norm_w(hidden_size)}
    for i in range(num_layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm_w(hidden_size)
        w[p + "post_attention_layernorm.weight"] = norm_w(hidden_size)
        w[p + "self_attn.q_proj.weight"] = rnd(q_out, hidden_size)
        w[p + "self_attn.k_proj.weight"] = rnd(kv_out, hidden_size)
        w[p + "self_attn.v_proj.weight"] = rnd(kv_out, hidden_size)
        w[p + "self_attn.o_proj.weight"] = rnd(hidden_size, q_out)
        if arch == "qwen2":
            for n, d in (("q", q_out), ("k", kv_out), ("v", kv_out)):
                w[p + f"self_attn.{n}_proj.bias"] = rnd(d, std=0.1)
        if arch == "qwen3":
            w[p + "self_attn.q_norm.weight"] = norm_w(head_dim)
            w[p + "self_attn.k_norm.weight"] = norm_w(head_dim)
        w[p + "mlp.gate_proj.weight"] = rnd(intermediate_size, hidden_size)
        w[p + "mlp.up_proj.weight"] = rnd(intermediate_size, hidden_size)
        w[p + "mlp.down_proj.weight"] = rnd(hidden_size, intermediate_size)
    if not tie:
        w["lm_head.weight"] = rnd(vocab, hidden_size)
    save_file(w, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    return out_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", default="llama", choices=sorted(_ARCHS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--num-layers", type=int, default=2)
    ap.add_argument("--num-heads", type=int, default=4)
    ap.add_argument("--num-kv-heads", type=int, default=2)
    ap.add_argument("--intermediate-size", type=int, default=128)
    ap.add_argument("--max-position-embeddings", type=int, default=2048)
    ap.add_argument("--vocab-size", type=int, default=768)
    a = ap.parse_args(argv)
    write_tiny_model(a.out, arch=a.arch, seed=a.seed, hidden_size=a.hidden_size,
                     num_layers=a.num_layers, num_heads=a.num_heads, num_kv_heads=a.num_kv_heads,
                     intermediate_size=a.intermediate_size,
                     max_position_embeddings=a.max_position_embeddings, vocab_size=a.vocab_size)
    print(f"wrote tiny {a.arch} checkpoint to {a.out}")


if __name__ == "__main__":
    main()
