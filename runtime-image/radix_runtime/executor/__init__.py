"""Running the model: one process's forward (model_runner.py), the same across a tensor/pipeline
parallel group (group_runner.py), and loading this rank's shard with its KV pool (shard.py)."""
