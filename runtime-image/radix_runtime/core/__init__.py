"""The bottom layer: the types every other package shares (configs, requests and outputs, the
engine protocol, errors, the forward batch) and the prompt checks."""
