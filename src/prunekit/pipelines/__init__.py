"""Orchestration, one module per pipeline: what a recipe runs, end to end.

- `lm_run`: the main job (`prunekit run`): baseline, prune sections, measured speed, report;
- `lm_baseline`: corpus -> tokenizer -> language model -> trained checkpoint -> metrics;
- `lm_compress`: a trained LM -> the recipe's prune sections -> one measured row per target size
  (`lm_milestones`: the larger sizes of an incremental run, landed on and fine-tuned);
- `lm_speed`: deployed (compact) bytes and measured batch-1 decode speed-ups;
- `lm_artifact`: load any LM checkpoint, run folder or export -> (model, tokenizer, description);
- `run_binding`: a run folder bound to its corpus and recipe (continue, redo or refuse);
- `lowrank` (any model + Task) and `lm_lowrank`: seed 000's trace-norm stage 1 + SVD stage 2;
- `prune_train` (any model + Task) and `lm_narang`: pruning during the first training (Narang);
- `asr`: speech features -> CTC acoustic model -> greedy WER / CER; `am_compress`: a speech
  recipe's `lowrank:` and narang `prune:` sections on that model.
"""
