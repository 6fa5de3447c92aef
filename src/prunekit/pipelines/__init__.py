"""Orchestration, one module per pipeline: what a recipe runs, end to end.

- `lm_baseline`: corpus -> tokenizer -> language model -> trained checkpoint -> metrics;
- `lm_compress`: a trained LM -> the recipe's prune sections -> one measured row per target size;
- `lowrank` (any model + Task) and `lm_lowrank`: seed 000's trace-norm stage 1 + SVD stage 2;
- `prune_train` (any model + Task) and `lm_narang`: pruning during the first training (Narang);
- `asr`: speech features -> CTC acoustic model -> greedy WER / CER; `am_compress`: a speech
  recipe's `lowrank:` and narang `prune:` sections on that model.
"""
