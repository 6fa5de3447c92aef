"""Parts of the main job's report: vocabulary and OOV lines, continued runs, plots whose legend
covers no point, and the corpus prepared once per run."""

import pytest
from matplotlib.transforms import Bbox

from prunekit.config import parse_recipe
from prunekit.data import build_tokenizer
from prunekit.pipelines import lm_baseline, lm_run
from prunekit.pipelines.lm_baseline import prepare_data
from prunekit.report.baseline import steps_line, vocabulary_line
from prunekit.report.plots import curves_figure, ppl_vs_size_figure

TEXT = "a a a b b c\nc d e f\n"


def test_word_vocabulary_is_the_whole_train_split_unless_capped(tiny_corpus, tiny_recipe):
    assert build_tokenizer("word", TEXT).vocab_size == 6 + 2  # <unk>, <eos>
    assert build_tokenizer("word", TEXT, 4).vocab_size == 4
    raw = tiny_recipe(tiny_corpus)
    del raw["data"]["vocab_size"]
    full = prepare_data(parse_recipe(raw))
    assert full.vocab["cap"] is None
    assert full.tokenizer.vocab_size == full.vocab["train_words"] + 2
    assert full.unk_rate("train") == 0.0 < full.unk_rate("test")
    capped = prepare_data(parse_recipe(raw, {"data.vocab_size": 300}))
    assert capped.unk_rate("test") > full.unk_rate("test")
    assert capped.vocab == {
        "kind": "word",
        "size": 300,
        "cap": 300,
        "train_words": full.vocab["train_words"],
    }


def test_demo_recipe_with_word_tokenizer_keeps_every_word():
    from prunekit.config import load_recipe
    from prunekit.recipes import builtin

    cfg = load_recipe(builtin("demo"), {"data.tokenizer": "word"})
    assert cfg.data.vocab_size is None  # no 2,000-word cap inherited from sentencepiece


@pytest.mark.parametrize(
    ("vocab", "size", "expected"),
    [
        ({"kind": "word", "cap": None, "train_words": 13777}, 13779,
         "word vocabulary of all 13,777 words of the train split"),
        ({"kind": "word", "cap": 2000, "train_words": 13777}, 2000,
         "word vocabulary capped at 2,000 (data.vocab_size=2,000): the 1,998 most frequent of "
         "13,777 train words, the rest mapped to <unk>"),
        ({"kind": "sentencepiece"}, 2000, "sentencepiece tokenizer with 2,000 units"),
    ],
)  # fmt: skip
def test_vocabulary_line(vocab, size, expected):
    assert vocabulary_line({"vocab": vocab, "vocab_size": size}).startswith(expected)


def test_steps_line_says_when_a_run_was_continued():
    assert (
        steps_line({"steps": 1200, "steps_history": [{"from_step": 0, "steps": 1200}]}) == "1,200"
    )
    history = [{"from_step": 0, "steps": 1200}, {"from_step": 1200, "steps": 2400}]
    assert steps_line({"steps": 2400, "steps_history": history}) == (
        "2,400 (continued: from step 0 under a 1,200-step schedule; from step 1,200 under a "
        "2,400-step schedule)"
    )


def _covers_a_point(fig) -> bool:
    """Whether a legend box overlaps any plotted marker (or line vertex)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        for line in ax.get_lines():
            r = max(line.get_markersize(), 1.0) * fig.dpi / 72 / 2
            for x, y in ax.transData.transform(line.get_xydata()):
                if box.overlaps(Bbox.from_extents(x - r, y - r, x + r, y + r)):
                    return True
    return False


def test_no_legend_covers_a_point():
    # Points in every corner and along the middle: a legend inside the axes covers one.
    xs = [50_000, 100_000, 200_000, 400_000, 800_000]
    series = {
        "a": list(zip(xs, [140, 60, 140, 60, 140], strict=True)),
        "b": list(zip(xs, [60, 140, 60, 140, 60], strict=True)),
        "c": list(zip(xs, [100] * 5, strict=True)),
    }
    assert not _covers_a_point(ppl_vs_size_figure(series, baseline=(900_000, 100)))
    train = [(s, 7.5 - s / 300) for s in range(10, 1210, 10)]
    valid = [(s, 6.0 - s / 400) for s in range(300, 1500, 300)]
    assert not _covers_a_point(curves_figure(train, valid))


def test_the_corpus_is_prepared_once_per_run(tiny_corpus, tiny_recipe, tmp_path, monkeypatch):
    calls = []
    load = lm_baseline.load_corpus
    monkeypatch.setattr(
        lm_baseline, "load_corpus", lambda src, **kw: calls.append(src) or load(src, **kw)
    )
    raw = tiny_recipe(tiny_corpus, steps=2, eval_every=2)
    raw["prune"] = [
        {"name": "u", "criterion": "magnitude", "sizes": [0.5], "steps": 4, "frequency": 2}
    ]
    raw["speed"] = {"enabled": False}
    result = lm_run.run_main(parse_recipe(raw), tmp_path, progress=False)
    assert len(result["compressed"]) == 1 and len(calls) == 1
