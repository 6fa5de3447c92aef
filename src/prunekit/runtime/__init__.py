"""Decoding runtime: compact models executed with the per-token overhead cut to the arithmetic.

- `kernels`: one scriptable kernel per exported layer kind (`linear_kernel`, `embedding_kernel`);
- `transformer`: `FastTransformerDecoder`, a TorchScript decode step for (compact) TransformerLMs;
- `gpt2`: `FastGPT2Decoder`, the same for Hugging Face GPT-2 (dense or compact);
- `fast_decoder(model)`: the fastest decoder prunekit has for a model.
"""

from prunekit.runtime.transformer import FastTransformerDecoder, fast_decoder

__all__ = ["FastTransformerDecoder", "fast_decoder"]
