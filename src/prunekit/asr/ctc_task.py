"""`CTCTask`: what the Trainer needs to train a CTC acoustic model on a `FeatureSet`.

- batches: utterances sorted by length and cut by a frame budget (`frame_batches`); the batch
  order is a permutation drawn from (seed, epoch) only, so a resumed run sees the same batches;
- DDP: rank r of W takes utterances r, r + W, ... of each (length-sorted) batch, so ranks get
  similar lengths; the loss is scaled so that DDP's gradient average equals the one-process
  gradient of the whole batch;
- SpecAugment (optional) on the training batches only, with a generator seeded from (seed, epoch,
  batch, position in the batch): the same masks after a resume and under any number of ranks;
- loss: `F.ctc_loss` summed over the batch and divided by its target characters (blank 0,
  `zero_infinity`: an utterance too short for its transcript adds nothing instead of inf);
- `validate`: the same CTC loss per target character over the whole dev set.

Features are normalized inside the model (`CTCAcousticModel.set_feature_stats` with
`feature_stats(train)`), so the task feeds raw log-mels and masks with the training mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.asr.batches import frame_batches, pad_features, pad_list
from prunekit.asr.units import CharUnits
from prunekit.audio.featureset import FeatureSet
from prunekit.audio.specaugment import SpecAugment
from prunekit.errors import PrunekitError
from prunekit.train.distributed import World, all_reduce_sum

_SEED_STRIDE = 1_000_003


def feature_stats(fs: FeatureSet) -> tuple[Tensor, Tensor]:
    """Per-feature mean (F,) and standard deviation (F,) over every frame of `fs`."""
    x = fs.feats.to(torch.float64)  # (sum T_i, F)
    if x.shape[0] == 0:
        raise PrunekitError("the training feature set is empty: build it with some utterances")
    return x.mean(0).to(fs.feats.dtype), x.std(0, correction=0).to(fs.feats.dtype)


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (run seed, epoch, batch, position, ...)."""
    s = 0
    for p in parts:
        s = (s * _SEED_STRIDE + int(p)) % (2**63 - 1)
    return s


def _ids(units: CharUnits, text: str) -> Tensor:
    return torch.tensor(units.encode(text), dtype=torch.int64)


@dataclass
class CTCBatch:
    """One process's share of a training batch.

    Attributes:
        feats: (b, T, F) zero-padded log-mels; lengths: (b,) frames.
        targets: (sum of target lengths,) unit ids; target_lengths: (b,).
        chars: target characters of the whole (global) batch, the loss normalizer.
        frames: input frames of the whole batch, for throughput.
        world_size: processes sharing the batch.
    """

    feats: Tensor
    lengths: Tensor
    targets: Tensor
    target_lengths: Tensor
    chars: int
    frames: int
    world_size: int


def ctc_sum(model: nn.Module, batch: CTCBatch) -> Tensor:
    """Summed CTC loss (a scalar) of `model` on `batch`."""
    log_probs, out_len = model(batch.feats, batch.lengths)  # (b, T', V), (b,)
    return F.ctc_loss(
        log_probs.transpose(0, 1),  # (T', b, V)
        batch.targets,
        out_len,
        batch.target_lengths,
        blank=0,
        reduction="sum",
        zero_infinity=True,
    )


class CTCTask:
    """Train a CTC model on `train`, validate on `dev` (see the module docstring).

    Args:
        train, dev: feature sets with spoken-form transcripts.
        max_frames: padded input frames per (global) training batch.
        eval_max_frames: padded input frames per validation batch (default max_frames).
        min_batch: utterances per training batch at least, even over the budget (DDP needs
            one per process; the same value gives the same batches under any process count).
        specaugment: masks for the training batches; None: no augmentation.
        units: the model's output units.
        sortagrad: the first epoch goes through the batches shortest first (Deep Speech 2's
            SortaGrad curriculum), later epochs in a shuffled order.

    Raises:
        PrunekitError: an empty set, differing feature sizes, a transcript with a character the
            units cannot spell, or an utterance longer than the frame budget.
    """

    unit = "frame"

    def __init__(
        self,
        train: FeatureSet,
        dev: FeatureSet,
        *,
        max_frames: int,
        eval_max_frames: int | None = None,
        min_batch: int = 1,
        specaugment: SpecAugment | None = None,
        units: CharUnits | None = None,
        sortagrad: bool = False,
    ) -> None:
        for name, fs in (("train", train), ("dev", dev)):
            if len(fs) == 0:
                raise PrunekitError(f"the {name} feature set has no utterances: add some")
        if train.feats.shape[1] != dev.feats.shape[1]:
            raise PrunekitError(
                f"train features have {train.feats.shape[1]} dims but dev features "
                f"{dev.feats.shape[1]}: build both with the same n_mels"
            )
        self.train, self.dev = train, dev
        self.char_units = units or CharUnits()
        self.train_targets = [_ids(self.char_units, t) for t in train.texts]
        self.dev_targets = [_ids(self.char_units, t) for t in dev.texts]
        self.batches = frame_batches(train.lengths, max_frames, min_batch)
        self.dev_batches = frame_batches(dev.lengths, eval_max_frames or max_frames)
        self.specaugment = specaugment
        self.sortagrad = sortagrad
        self.mean, self.std = feature_stats(train)
        self._epoch, self._seed = 0, 0

    def __len__(self) -> int:
        return len(self.batches)

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        """Batch indices of `epoch`: a permutation drawn from (seed, epoch) only.

        Also remembers (epoch, seed) for the SpecAugment masks of this epoch's batches.
        """
        self._epoch, self._seed = epoch, seed
        if not shuffle or (self.sortagrad and epoch == 0):
            return list(range(len(self.batches)))
        g = torch.Generator().manual_seed(mix_seed(seed, epoch))
        return torch.randperm(len(self.batches), generator=g).tolist()

    def batch(self, index: int, world: World) -> CTCBatch:
        """This rank's utterances of batch `index` (positions rank, rank + W, ...), augmented."""
        members = self.batches[index]
        if len(members) < world.size:
            raise PrunekitError(
                f"training batch {index} has {len(members)} utterances for {world.size} "
                "processes: set min_batch (am.min_batch) to at least the number of processes"
            )
        mine = list(range(world.rank, len(members), world.size))
        feats = []
        for j in mine:
            x = self.train[members[j]]  # (T_i, F)
            if self.specaugment is not None:
                g = torch.Generator().manual_seed(mix_seed(self._seed, self._epoch, index, j))
                x = self.specaugment(x, g, fill=self.mean)
            feats.append(x)
        padded, lengths = pad_list(feats)
        targets = [self.train_targets[members[j]] for j in mine]
        return CTCBatch(
            feats=padded,
            lengths=lengths,
            targets=torch.cat(targets),
            target_lengths=torch.tensor([t.numel() for t in targets], dtype=torch.int64),
            chars=sum(self.train_targets[i].numel() for i in members),
            frames=int(sum(int(self.train.lengths[i]) for i in members)),
            world_size=world.size,
        )

    def loss(self, model: nn.Module, batch: CTCBatch) -> Tensor:
        """CTC loss per target character of the global batch (this rank's part, times W)."""
        return ctc_sum(model, batch) * batch.world_size / max(1, batch.chars)

    def units(self, batch: CTCBatch, world: World) -> int:
        return batch.frames

    @torch.no_grad()
    def validate(self, model: nn.Module, world: World) -> float:
        """Dev CTC loss per target character (dev batches split over the ranks)."""
        was_training = model.training
        model.eval()
        total, chars = 0.0, 0
        try:
            for b in range(world.rank, len(self.dev_batches), world.size):
                members = self.dev_batches[b]
                feats, lengths = pad_features(self.dev, members)
                targets = [self.dev_targets[i] for i in members]
                batch = CTCBatch(
                    feats, lengths, torch.cat(targets), torch.tensor([t.numel() for t in targets]),
                    chars=0, frames=0, world_size=1,
                )  # fmt: skip
                total += float(ctc_sum(model, batch))
                chars += int(batch.target_lengths.sum())
        finally:
            model.train(was_training)
        total, chars = all_reduce_sum([total, float(chars)], world)
        return total / max(1.0, chars)
