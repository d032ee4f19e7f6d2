"""The engine: RadixEngine runs the scheduler over the model in a thread of its own."""
