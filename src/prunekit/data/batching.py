"""Language-model batches: a token stream cut into rows, read in fixed-length windows."""

from __future__ import annotations

import torch

from prunekit.errors import PrunekitError

_SEED_STRIDE = 1_000_003


class LMBatches:
    """A 1-D token stream folded into `batch_size` contiguous rows, read `bptt` columns at a time.

    As in PyTorch's word_language_model, the tokens that do not fill a whole row are dropped.
    Window i reads columns [i*bptt, (i+1)*bptt) as inputs and the same shifted by one as
    targets; every window is full length.

    Attributes:
        data: (B, N) int64, row r holding tokens [r*N, (r+1)*N) of the stream.
        batch_size: B.
        bptt: window length.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, bptt: int) -> None:
        """Batchify a token stream.

        Args:
            tokens: (T,) integer token ids.
            batch_size: number of rows B.
            bptt: window length in tokens.

        Raises:
            PrunekitError: if batch_size or bptt is < 1, or the stream is too short for one
                window.
        """
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
        if batch_size < 1 or bptt < 1:
            raise PrunekitError(
                f"batch_size={batch_size} and bptt={bptt} must both be >= 1: set positive values"
            )
        total = tokens.numel()
        cols = total // batch_size
        self.batch_size = batch_size
        self.bptt = bptt
        self.data = tokens[: cols * batch_size].to(torch.int64).view(batch_size, cols)
        self._num_windows = max(0, (cols - 1) // bptt)
        if self._num_windows < 1:
            raise PrunekitError(
                f"split has {total} tokens, too few for one window of batch_size={batch_size} "
                f"x bptt={bptt} (needs {batch_size * (bptt + 1)}): lower batch_size or bptt"
            )

    def __len__(self) -> int:
        """Number of windows."""
        return self._num_windows

    @property
    def num_tokens(self) -> int:
        """Number of target tokens over all windows: B * bptt * len(self)."""
        return self.batch_size * self.bptt * self._num_windows

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return window i.

        Args:
            i: window index in [0, len(self)).

        Returns:
            (x, y): inputs and next-token targets, both (B, bptt) int64; y[:, t] follows x[:, t].

        Raises:
            IndexError: if i is out of range.
        """
        if not 0 <= i < self._num_windows:
            raise IndexError(f"window {i} out of range [0, {self._num_windows})")
        start = i * self.bptt
        x = self.data[:, start : start + self.bptt].contiguous()
        y = self.data[:, start + 1 : start + 1 + self.bptt].contiguous()
        return x, y

    def order(self, epoch: int, seed: int, shuffle: bool = True) -> list[int]:
        """Return the window indices to visit in one epoch.

        Args:
            epoch: epoch number.
            seed: run seed.
            shuffle: permute the windows; if False, visit them in order.

        Returns:
            A permutation of range(len(self)), a function of (seed, epoch) only.
        """
        if not shuffle:
            return list(range(self._num_windows))
        generator = torch.Generator().manual_seed(seed * _SEED_STRIDE + epoch)
        return torch.randperm(self._num_windows, generator=generator).tolist()

    @staticmethod
    def shard(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        """Return this process's rows of a batch for data-parallel training.

        Args:
            x: (B, ...) batch.
            rank: this process's index in [0, world_size).
            world_size: number of processes W.

        Returns:
            (B/W, ...) rows [rank*B/W, (rank+1)*B/W) of x.

        Raises:
            PrunekitError: if B is not divisible by W.
        """
        rows = x.shape[0]
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in [0, world_size={world_size})")
        if rows % world_size:
            raise PrunekitError(
                f"batch_size={rows} must be divisible by the number of processes {world_size}: "
                "change batch_size or the process count"
            )
        per = rows // world_size
        return x[rank * per : (rank + 1) * per]
