"""HTTP front end of radix_runtime: SGLang-native, OpenAI-compatible and admin routes.

Besides SGLang's own fields (https://docs.sglang.ai/), responses carry the fields the Olla proxy's
SGLang docs describe (https://thushan.github.io/olla/integrations/backend/sglang/): the `meta`
block, /batch, /extend, X-SGLang-Cache-Hit; the modules call those "Olla's SGLang docs".
"""
