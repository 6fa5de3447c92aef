import pytest
import torch
import torch.nn.functional as F
from speech_standins import TINY_AM, speech_set, speech_splits

from prunekit.asr.batches import frame_batches, pad_features
from prunekit.asr.ctc_task import CTCTask, feature_stats
from prunekit.asr.greedy import greedy_error_rates
from prunekit.audio.featureset import FeatureSet
from prunekit.audio.specaugment import SpecAugment
from prunekit.config import TrainConfig
from prunekit.errors import PrunekitError
from prunekit.models import build_model
from prunekit.train.distributed import World
from prunekit.train.trainer import Trainer

AUG = SpecAugment(freq_masks=2, freq_width=3, time_masks=2, time_width=10)
LEARNER = {**TINY_AM, "d_hidden": 64, "n_layer": 1}


@pytest.fixture(scope="module")
def splits():
    return speech_splits(n_train=48, n_dev=16)


def _model(**kw):
    torch.manual_seed(0)
    return build_model({**TINY_AM, **kw})


def test_frame_batches_keep_the_budget_and_cover_every_utterance():
    lengths = torch.randint(10, 200, (57,), generator=torch.Generator().manual_seed(0))
    batches = frame_batches(lengths, 600)
    assert sorted(i for b in batches for i in b) == list(range(57))
    for b in batches:
        assert len(b) * max(int(lengths[i]) for i in b) <= 600
    flat = [int(lengths[i]) for b in batches for i in b]
    assert flat == sorted(flat)  # length-bucketed
    paired = frame_batches(lengths, 300, min_batch=2)  # the longest ones exceed 300 in pairs
    assert min(len(b) for b in paired) >= 2
    assert sorted(i for b in paired for i in b) == list(range(57))
    with pytest.raises(PrunekitError) as err:
        frame_batches(torch.tensor([5, 700]), 600)
    assert str(err.value) == (
        "utterance 1 has 700 frames, more than the batch budget max_frames=600: raise "
        "max_frames to at least 700"
    )


def test_order_is_a_function_of_seed_and_epoch(splits):
    task = CTCTask(splits["train"], splits["dev"], max_frames=600)
    assert len(task) > 5
    a = task.order(0, 1, True)
    assert sorted(a) == list(range(len(task)))
    assert a == task.order(0, 1, True)
    assert a != task.order(1, 1, True) and a != task.order(0, 2, True)
    assert task.order(3, 1, False) == list(range(len(task)))


def test_sortagrad_runs_the_first_epoch_shortest_first(splits):
    plain = CTCTask(splits["train"], splits["dev"], max_frames=600)
    task = CTCTask(splits["train"], splits["dev"], max_frames=600, sortagrad=True)
    first = task.order(0, 1, True)
    assert first == list(range(len(task))) != plain.order(0, 1, True)
    sizes = [max(int(splits["train"].lengths[i]) for i in task.batches[b]) for b in first]
    assert sizes == sorted(sizes)
    assert task.order(1, 1, True) == plain.order(1, 1, True)  # later epochs: shuffled as usual


def test_batch_pads_and_encodes_targets(splits):
    task = CTCTask(splits["train"], splits["dev"], max_frames=600)
    task.order(0, 0, True)
    b = task.batch(2, World())
    members = task.batches[2]
    feats, lengths = pad_features(splits["train"], members)
    assert torch.equal(b.feats, feats) and torch.equal(b.lengths, lengths)
    texts = [splits["train"].texts[i] for i in members]
    assert b.target_lengths.tolist() == [len(t) for t in texts]
    assert b.chars == sum(len(t) for t in texts)
    assert b.frames == int(lengths.sum())
    assert task.units(b, World()) == b.frames
    assert b.targets[: len(texts[0])].tolist() == task.char_units.encode(texts[0])


def test_specaugment_is_seeded_by_epoch_batch_and_position_not_by_rank(splits):
    task = CTCTask(splits["train"], splits["dev"], max_frames=600, specaugment=AUG)
    task.order(0, 7, True)
    whole = task.batch(1, World())
    again = task.batch(1, World())
    shares = [task.batch(1, World(rank=r, size=2)) for r in range(2)]
    task.order(1, 7, True)
    next_epoch = task.batch(1, World())
    plain = CTCTask(splits["train"], splits["dev"], max_frames=600)
    clean = plain.batch(1, World())
    assert torch.equal(whole.feats, again.feats)
    assert not torch.equal(whole.feats, clean.feats)  # masks were applied
    assert not torch.equal(whole.feats, next_epoch.feats)  # new masks each epoch
    for r, share in enumerate(shares):  # rank r holds positions r, r + 2, ...
        n = share.feats.shape[1]
        assert torch.equal(share.feats, whole.feats[r::2, :n])
        assert share.chars == whole.chars and share.world_size == 2


def test_ddp_shares_average_to_the_one_process_gradient(splits):
    task = CTCTask(splits["train"], splits["dev"], max_frames=600)
    task.order(0, 0, False)

    def grads(world):
        model = _model()
        task.loss(model, task.batch(0, world)).backward()
        return [p.grad.clone() for p in model.parameters()]

    one = grads(World())
    two = [grads(World(rank=r, size=2)) for r in range(2)]
    for g, g0, g1 in zip(one, *two, strict=True):
        assert torch.allclose(g, (g0 + g1) / 2, atol=1e-6)


def test_loss_is_ctc_per_target_character(splits):
    task = CTCTask(splits["train"], splits["dev"], max_frames=600)
    task.order(0, 0, False)
    model = _model()
    b = task.batch(0, World())
    log_probs, out_len = model(b.feats, b.lengths)
    per_utt = F.ctc_loss(
        log_probs.transpose(0, 1), b.targets, out_len, b.target_lengths, reduction="none"
    )
    assert task.loss(model, b).item() == pytest.approx(per_utt.sum().item() / b.chars, rel=1e-5)


def test_validate_is_dev_loss_per_char_and_restores_the_mode(splits):
    task = CTCTask(splits["train"], splits["dev"], max_frames=600, eval_max_frames=300)
    model = _model(dropout=0.3).train()
    value = task.validate(model, World())
    assert model.training
    model.eval()
    feats, lengths = pad_features(splits["dev"], list(range(len(splits["dev"]))))
    with torch.no_grad():
        log_probs, out_len = model(feats, lengths)
    targets = [torch.tensor(task.char_units.encode(t)) for t in splits["dev"].texts]
    loss = F.ctc_loss(
        log_probs.transpose(0, 1),
        torch.cat(targets),
        out_len,
        torch.tensor([len(t) for t in targets]),
        reduction="sum",
    )
    assert value == pytest.approx(float(loss) / sum(len(t) for t in targets), rel=1e-5)


def test_feature_stats_are_the_train_mean_and_deviation(splits):
    mean, std = feature_stats(splits["train"])
    x = splits["train"].feats
    assert torch.allclose(mean, x.mean(0), atol=1e-4)
    assert torch.allclose(std, x.std(0, correction=0), atol=1e-4)


def test_training_learns_to_read_the_standin_speech(splits, tmp_path):
    torch.manual_seed(0)
    model = build_model(LEARNER)
    task = CTCTask(splits["train"], splits["dev"], max_frames=1200)
    model.set_feature_stats(task.mean, task.std)
    before = task.validate(model, World())
    cfg = TrainConfig(steps=150, lr=1e-2, warmup_steps=10, eval_every=75, grad_clip=5.0)
    trainer = Trainer(model, task, cfg, tmp_path, progress=False)
    trainer.fit()
    assert trainer.history.valid[-1][1] < 0.3 * before
    rates, _ = greedy_error_rates(model, splits["test"])
    assert rates["cer"] < 0.3


def test_exact_resume_with_specaugment_on(splits, tmp_path):
    cfg = TrainConfig(steps=12, lr=5e-3, warmup_steps=2, eval_every=100, checkpoint_every=5)
    cfg = cfg.model_copy(update={"log_every": 1})

    def trainer(out):
        model = _model(dropout=0.2)
        task = CTCTask(splits["train"], splits["dev"], max_frames=500, specaugment=AUG)
        model.set_feature_stats(task.mean, task.std)
        return Trainer(model, task, cfg, out, progress=False)

    straight = trainer(tmp_path / "a")
    straight.fit()
    first = trainer(tmp_path / "b")
    first.fit(steps=5)  # killed after step 5: checkpoints/last holds step 5
    assert len(first.task) < 12  # the run crosses an epoch boundary
    resumed = trainer(tmp_path / "b")
    torch.manual_seed(999)
    resumed.resume(tmp_path / "b" / "checkpoints" / "last")
    assert resumed.step == 5
    resumed.fit()
    assert [v for _, v in resumed.history.train] == [v for _, v in straight.history.train]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_inputs_name_the_fix(splits):
    bad = FeatureSet.from_list([torch.zeros(40, 16)], ["héllo"], ["u0"], ["v"])
    with pytest.raises(PrunekitError) as err:
        CTCTask(bad, splits["dev"], max_frames=600)
    assert str(err.value) == (
        "transcript 'héllo' has the character 'é', which the acoustic model cannot emit: "
        "normalize transcripts with prunekit.data.spoken.spoken_form"
    )
    other = speech_set(4, [0], seed=9, n_mels=8)
    with pytest.raises(PrunekitError) as err:
        CTCTask(splits["train"], other, max_frames=600)
    assert str(err.value) == (
        "train features have 16 dims but dev features 8: build both with the same n_mels"
    )
    empty = FeatureSet.from_list([], [], [], [])
    with pytest.raises(PrunekitError) as err:
        CTCTask(empty, splits["dev"], max_frames=600)
    assert str(err.value) == "the train feature set has no utterances: add some"
    longest = int(splits["train"].lengths.max())
    task = CTCTask(splits["train"], splits["dev"], max_frames=longest)
    single = len(task) - 1  # the longest utterance fills a batch alone
    assert len(task.batches[single]) == 1
    with pytest.raises(PrunekitError) as err:
        task.batch(single, World(rank=0, size=2))
    assert str(err.value) == (
        f"training batch {single} has 1 utterances for 2 processes: set min_batch "
        "(am.min_batch) to at least the number of processes"
    )
