"""Decode a set of utterances with one LM setting, and time it: `decode_all`.

The real-time factor is decode seconds / audio seconds (the caller passes each utterance's audio
duration; the acoustic model's time is not included), and the LM's share is the time spent inside
the LMs' batched calls (fused LM and internal LM) / decode seconds. Set the thread count before
calling (`torch.set_num_threads(1)` for the 1-thread numbers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from prunekit.asr.beam_search import BeamConfig, CTCBeamSearch, FusionParams, Hypothesis
from prunekit.asr.lm_scorer import WordLM
from prunekit.asr.units import CharUnits
from prunekit.errors import PrunekitError


@dataclass(frozen=True)
class DecodeTiming:
    """Wall-clock seconds of a decoding run (see the module docstring)."""

    decode_seconds: float
    audio_seconds: float
    lm_seconds: float
    lm_calls: int
    lm_tokens: int
    utterances: int

    @property
    def rtf(self) -> float:
        """Real-time factor: decode seconds per audio second."""
        return self.decode_seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0

    @property
    def lm_share(self) -> float:
        """Fraction of the decode time spent in LM calls."""
        return self.lm_seconds / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(rtf=self.rtf, lm_share=self.lm_share)
        return out


@dataclass(frozen=True)
class DecodeResult:
    """Best texts, n-best lists (best first) and timing of `decode_all`."""

    texts: list[str]
    nbest: list[list[Hypothesis]]
    timing: DecodeTiming


def _lm_totals(lms: Sequence[WordLM | None]) -> tuple[float, int, int]:
    live = [m for m in lms if m is not None]
    return (
        sum(m.seconds for m in live),
        sum(m.calls for m in live),
        sum(m.tokens for m in live),
    )


def check_durations(n: int, durations: Sequence[float]) -> None:
    """Raise PrunekitError unless there is one positive duration per utterance."""
    if len(durations) != n:
        raise PrunekitError(
            f"got {len(durations)} durations for {n} utterances: pass one audio duration "
            "(seconds) per utterance"
        )
    if any(not d > 0 for d in durations):
        raise PrunekitError("audio durations must be > 0 seconds: pass each utterance's length")


def decode_all(
    log_probs: Sequence[Tensor | np.ndarray],
    durations: Sequence[float],
    *,
    lm: WordLM | None = None,
    ilm: WordLM | None = None,
    params: FusionParams | None = None,
    config: BeamConfig | None = None,
    units: CharUnits | None = None,
    on_utterance: Callable[[], Any] | None = None,
) -> DecodeResult:
    """Beam-search every utterance with shallow fusion; time the whole run.

    Args:
        log_probs: per utterance (T_i, V) CTC log-probs, trimmed to its length.
        durations: per utterance audio seconds (for the real-time factor).
        lm, ilm: fused LM and density-ratio source LM (`WordLM`), or None.
        params, config, units: see `CTCBeamSearch`.
        on_utterance: called after each utterance (e.g. a progress bar's update).

    Returns:
        The texts, n-best lists and timing. LM caches are reset per utterance.
    """
    check_durations(len(log_probs), durations)
    search = CTCBeamSearch(lm, ilm, params, config, units)
    lm_before = _lm_totals([lm, ilm])
    nbest = []
    t0 = time.perf_counter()
    for lp in log_probs:
        for m in (lm, ilm):
            if m is not None:
                m.reset()
        nbest.append(search.search(lp))
        if on_utterance is not None:
            on_utterance()
    elapsed = time.perf_counter() - t0
    lm_after = _lm_totals([lm, ilm])
    timing = DecodeTiming(
        decode_seconds=elapsed,
        audio_seconds=float(sum(durations)),
        lm_seconds=lm_after[0] - lm_before[0],
        lm_calls=lm_after[1] - lm_before[1],
        lm_tokens=lm_after[2] - lm_before[2],
        utterances=len(log_probs),
    )
    return DecodeResult([h[0].text if h else "" for h in nbest], nbest, timing)
