"""Under torch.distributed, accumulated scores are averaged so every rank computes the same mask."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from prunekit.prune import OneShot, PruneConfig, Pruner

CFG = PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches(rank: int) -> list:
    g = torch.Generator().manual_seed(100 + rank)
    return [
        (torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(2)
    ]


def _calibrated_masks(batches: list) -> dict:
    model = _model()
    pruner = Pruner(model, CFG).attach()
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        pruner.accumulate()
    pruner.prune_now(0.5)
    return {k: v.clone() for k, v in pruner.masks().items()}


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_calibrated_masks(_batches(rank)), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_with_different_data_compute_one_mask(tmp_path):
    mp.start_processes(
        _worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    pooled = _calibrated_masks(_batches(0) + _batches(1))  # mean over both ranks' gradients
    local = _calibrated_masks(_batches(0))
    assert any(not torch.equal(local[k], pooled[k]) for k in pooled)  # the averaging matters
    for k in pooled:
        assert torch.equal(r0[k], r1[k]) and torch.equal(r0[k], pooled[k]), k
