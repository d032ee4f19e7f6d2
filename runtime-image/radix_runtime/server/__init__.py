"""HTTP front end of radix_runtime: SGLang-native, OpenAI-compatible and admin routes."""
