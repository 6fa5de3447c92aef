"""Transcribe audio with a trained acoustic model, optionally fused with an NNLM (minus an ILM).

    t = Transcriber.load("runs/asr/am/checkpoints/best", lm="runs/asr/lm/checkpoints/best")
    t.transcribe(load_audio("hello.wav"))  # -> "hello world"

Without an LM the CTC output is decoded greedily (best unit per frame); with one, by the CTC
prefix beam search with word-level shallow fusion (`prunekit.asr.beam_search`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.asr.beam_search import BeamConfig, CTCBeamSearch, FusionParams
from prunekit.asr.lm_scorer import WordLM
from prunekit.asr.load_lm import LoadedLM, load_lm
from prunekit.asr.units import CharUnits
from prunekit.audio.features import LogMel
from prunekit.errors import PrunekitError

DEFAULT_FUSION = FusionParams(lm_weight=0.5, ilm_weight=0.0, word_bonus=1.0)
DEFAULT_FUSION_WITH_ILM = FusionParams(lm_weight=0.5, ilm_weight=0.1, word_bonus=1.0)


def load_acoustic_model(path: str | Path) -> nn.Module:
    """A CTC acoustic model from a training checkpoint or a compact export folder, in eval mode.

    Raises:
        PrunekitError: a missing path, or a model that is not a CTC acoustic model.
    """
    from prunekit.export.io import load_compact
    from prunekit.models import CTCAcousticModel, build_model
    from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state

    path = Path(path)
    if not path.is_dir():
        raise PrunekitError(
            f"acoustic model {path} does not exist: pass a checkpoint folder such as "
            "runs/asr/am/checkpoints/best"
        )
    if (path / "manifest.json").is_file():
        model = load_compact(path)
    else:
        config = read_checkpoint_state(path)["state"].get("model_config") or {}
        if config.get("arch") != "ctc":
            raise PrunekitError(
                f"{path} holds a {config.get('arch', 'non-prunekit')} model, not a CTC acoustic "
                "model: pass the acoustic model's checkpoint (e.g. runs/asr/am/checkpoints/best)"
            )
        model = build_model(config)
        load_checkpoint(path, model)
    if not isinstance(model, CTCAcousticModel):
        raise PrunekitError(f"{path} is not a CTC acoustic model: pass the acoustic model's files")
    return model.eval()


def read_fusion(path: str | Path) -> FusionParams:
    """Fusion weights from a JSON file: {"lm_weight", "ilm_weight", "word_bonus"}, or a tuning
    result of `prunekit asr` (decode/tune-*.json, whose "best" holds them).

    Raises:
        PrunekitError: a missing or malformed file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrunekitError(
            f"fusion file {path} cannot be read ({exc.__class__.__name__}): pass a JSON file "
            'such as {"lm_weight": 0.5, "ilm_weight": 0.1, "word_bonus": 1.0}'
        ) from None
    data = data.get("best", data) if isinstance(data, dict) else data
    keys = {"lm_weight", "ilm_weight", "word_bonus"}
    if not isinstance(data, dict) or not set(data) <= keys or not data:
        raise PrunekitError(
            f"fusion file {path} must hold lm_weight, ilm_weight and word_bonus (or a tuning "
            "result with them under 'best'): fix the file"
        )
    try:
        return FusionParams.from_dict(data)
    except (TypeError, ValueError):
        raise PrunekitError(f"fusion file {path} has a non-numeric weight: fix the file") from None


@dataclass
class Transcriber:
    """An acoustic model, optional LMs, and how to decode with them."""

    am: nn.Module
    lm: LoadedLM | None = None
    ilm: LoadedLM | None = None
    params: FusionParams = DEFAULT_FUSION
    beam: BeamConfig = BeamConfig()

    @classmethod
    def load(
        cls,
        am: str | Path,
        *,
        lm: str | Path | None = None,
        ilm: str | Path | None = None,
        params: FusionParams | None = None,
        beam: BeamConfig | None = None,
        lm_tokenizer: str | Path | None = None,
    ) -> Transcriber:
        """Load the models (see `load_acoustic_model`, `prunekit.asr.load_lm`).

        Raises:
            PrunekitError: an ILM without an LM, or a model that cannot be loaded.
        """
        if ilm is not None and lm is None:
            raise PrunekitError("--ilm needs --lm: the internal LM is subtracted from a fused LM")
        default = DEFAULT_FUSION_WITH_ILM if ilm is not None else DEFAULT_FUSION
        return cls(
            load_acoustic_model(am),
            load_lm(lm, lm_tokenizer) if lm is not None else None,
            load_lm(ilm) if ilm is not None else None,
            params or default,
            beam or BeamConfig(),
        )

    @property
    def n_mels(self) -> int:
        return int(self.am.feat_mean.numel())

    @torch.no_grad()
    def log_probs(self, wave: torch.Tensor) -> torch.Tensor:
        """(T,) 16 kHz waveform -> (T', V) CTC log-probs."""
        feats = LogMel(n_mels=self.n_mels)(wave)  # (frames, n_mels)
        lp, _ = self.am(feats.unsqueeze(0), torch.tensor([feats.shape[0]]))  # (1, T', V)
        return lp[0]

    def transcribe(self, wave: torch.Tensor) -> str:
        """The transcript of one (T,) 16 kHz waveform."""
        lp = self.log_probs(wave)
        if self.lm is None:
            return CharUnits().collapse(lp.argmax(-1).tolist())
        lm = WordLM(self.lm.model, self.lm.tokenizer)
        ilm = WordLM(self.ilm.model, self.ilm.tokenizer) if self.ilm is not None else None
        hyps = CTCBeamSearch(lm, ilm, self.params, self.beam).search(lp)
        return hyps[0].text if hyps else ""

    def describe(self) -> dict[str, Any]:
        """What decodes: the LMs' paths and kinds and the fusion weights."""
        out: dict[str, Any] = {"decoder": "greedy" if self.lm is None else "beam + fusion"}
        for name, m in (("lm", self.lm), ("ilm", self.ilm)):
            if m is not None:
                out[name] = {"path": str(m.path), "kind": m.kind}
        if self.lm is not None:
            out["fusion"] = self.params.to_dict()
        return out
