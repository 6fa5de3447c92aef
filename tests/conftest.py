import torch

# One thread per test process: `make test` runs two processes (pytest -n 2) on a 2-core machine.
torch.set_num_threads(1)
