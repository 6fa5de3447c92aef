"""A seconds-long `bench am-compress` grid on stand-in speech (tests only)."""

import copy

from speech_standins import TINY_AM, speech_splits

TRAIN = {"steps": 8, "lr": 0.02, "warmup_steps": 2, "eval_every": 4, "checkpoint_every": 2,
         "log_every": 2, "threads": 1, "weight_decay": 0.0}  # fmt: skip
LOWRANK = {"thresholds": [0.6, 0.95], "stage2_steps": 4, "stage2_lr": 0.01, "nu_every": 4}
TINY_SPEC = {
    "name": "am_tiny",
    "am": {"model": {**{k: v for k, v in TINY_AM.items() if k != "n_mels"}, "streaming": True,
                     "d_hidden": 16, "d_input": 16},
           "train": TRAIN, "max_frames": 400, "min_batch": 2, "eval_max_frames": 4000,
           "specaugment": None},
    "lowrank": [
        {"name": "tn", "regularizer": "tracenorm", "lambda_rec": [0.0, 1e-3],
         "lambda_nonrec": 1e-3, **LOWRANK},
        {"name": "l2", "regularizer": "l2", "lambda_rec": 1e-3, "lambda_nonrec": 1e-3, **LOWRANK},
        {"name": "tn-short", "regularizer": "tracenorm", "lambda_rec": 1e-3,
         "lambda_nonrec": 1e-3, **LOWRANK, "stage1_steps": 4},
    ],
    "prune": [{"name": "narang", "schedule": "narang", "criterion": "magnitude",
               "scope": {"module_types": ["Linear", "GRU"]},
               "narang": {"start": 1, "ramp": 3, "end": 6, "freq": 1, "compare": ["magnitude"]}}],
    "bench": {"eval_splits": ["test"], "dense_widths": [8, 16], "sparse_widths": [16],
              "compare_width": 16, "structured": 0.5},
}  # fmt: skip


def tiny_spec(**bench) -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec["bench"].update(bench)
    return spec


def tiny_feats() -> dict:
    return speech_splits(n_train=24, n_dev=8)
