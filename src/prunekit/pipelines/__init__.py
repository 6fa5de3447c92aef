"""Orchestration, one module per pipeline: what a recipe runs, end to end.

- `lm_baseline`: corpus -> tokenizer -> language model -> trained checkpoint -> metrics;
- `lm_compress`: a trained LM -> the recipe's prune sections -> one measured row per target size.
"""
