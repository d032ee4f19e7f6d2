"""Benchmarks (not tests): `python -m bench` (what `make bench` runs). Process helpers and the
workload come from tests/support/."""


def bench_model(args, tmp: str) -> str:
    """--model-path, else a tiny checkpoint of --hidden-size x --num-layers written under tmp."""
    if args.model_path is not None:
        return args.model_path
    from radix_runtime.tiny_model import write_tiny_model

    return write_tiny_model(f"{tmp}/model", hidden_size=args.hidden_size, num_layers=args.num_layers,
                            num_heads=4, num_kv_heads=2, intermediate_size=4 * args.hidden_size,
                            max_position_embeddings=2048)


def results_path(name: str) -> str:
    """Where a benchmark writes its JSON: $SGLANG_FLEET_CACHE/bench (default ~/.cache/sglang-fleet)."""
    import os

    root = os.environ.get("SGLANG_FLEET_CACHE", os.path.expanduser("~/.cache/sglang-fleet"))
    return os.path.join(root, "bench", name)
