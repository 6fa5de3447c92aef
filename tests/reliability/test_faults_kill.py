"""Fault injection: SIGKILL `prunekit train`, `prune` and `bench paper` at random moments and
inside checkpoint / JSON writes, rerun each to the end, and require the result to be identical,
tensor by tensor and metric by metric, to an uninterrupted run (`make test-faults`)."""

import pytest
from fault_harness import kill_trial, reference
from reliability_helpers import prune_section, tiny_recipe_file

pytestmark = [pytest.mark.slow, pytest.mark.faults]

TRIALS = {"train": 10, "prune": 10, "bench paper": 8}


def _recipe(tiny_corpus, tiny_recipe) -> dict:
    """Dropout on, checkpoints every 2 steps, losses logged every 3 (resume mid-average)."""
    recipe = tiny_recipe(tiny_corpus, steps=16, eval_every=8, checkpoint_every=2, log_every=3)
    recipe["prune"] = [prune_section(steps=10), prune_section(name="f", method="factorized")]
    return recipe


def _paper(tiny_corpus, tiny_recipe) -> dict:
    """A 7-cell grid: baseline, Table 1 (one-shot, incremental), Table 2, Fig. 2 fine-tuning."""
    recipe = tiny_recipe(tiny_corpus, steps=12, eval_every=6, log_every=3)
    recipe["paper"] = {
        "sizes": [0.5],
        "seeds": [0],
        "seeded_sizes": [],
        "criteria": ["magnitude", "taylor"],
        "extra_criteria": [],
        "methods": ["unstructured"],
        "scratch": False,
        "checkpoint_every": 2,
        "prune": {"steps": 8, "frequency": 2, "ramp": 0.5, "calibration_batches": 2},
        "fig2": {"epochs": 1, "epoch_steps": 4},
        "fig3": {"enabled": False},
        "latency": {"each_cell": False},
    }
    return recipe


@pytest.fixture(scope="module")
def references(tiny_corpus, tiny_recipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-references")
    train = tiny_recipe_file(root, _recipe(tiny_corpus, tiny_recipe), "train.yaml")
    paper = tiny_recipe_file(root, _paper(tiny_corpus, tiny_recipe), "paper.yaml")
    refs = {"train": reference(["train", "--recipe", str(train)], root / "train")}
    best = root / "train" / "checkpoints" / "best"
    refs["prune"] = reference(["prune", str(best), "--recipe", str(train)], root / "prune")
    refs["bench paper"] = reference(["bench", "paper", "--recipe", str(paper)], root / "paper")
    return refs


@pytest.mark.parametrize(
    ("command", "trial"), [(c, i) for c, n in TRIALS.items() for i in range(n)]
)
def test_killed_run_resumes_to_the_uninterrupted_result(references, tmp_path, command, trial):
    result = kill_trial(command, references[command], trial, tmp_path / "out")
    assert result["half_written_after_kill"] == []
    assert result["rerun_exit"] == 0, result["rerun_error"]
    assert result["differences"] == []
