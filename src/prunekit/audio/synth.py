"""Offline speech synthesis with the synthesizers Debian ships: espeak-ng, flite and festival.

A `Voice` names an engine, one of its voices (plus an espeak-ng variant) and a relative speaking
rate and pitch. `synthesize(text, voice)` runs the engine as a subprocess (no network) and returns
16 kHz mono audio. A missing engine or voice is a one-line `PrunekitError` naming the Debian
package that provides it.
"""

from __future__ import annotations

import functools
import itertools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from prunekit.audio.wav import SAMPLE_RATE, load_audio
from prunekit.errors import PrunekitError

ENGINES = ("espeak-ng", "flite", "festival")
PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival"}
"""Debian package of each engine's program."""

ESPEAK_ACCENTS = (
    "en-gb",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
"""espeak-ng's eight English accents (British, American, Scottish, Lancastrian, RP, West Midlands,
Caribbean, New York City)."""

ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
ESPEAK_VARIANTS += ("klatt", "klatt3", "steph")
"""Voice variants (espeak-ng-data/voices/!v): "" is the accent's own voice."""

FLITE_VOICES: dict[str, float | None] = {"kal16": 95.0, "awb": 130.0, "rms": None, "slt": 170.0}
"""flite's voices and their mean pitch in Hz (None: flite's rms ignores pitch settings)."""

FESTIVAL_VOICES: dict[str, tuple[str, str, float | None]] = {
    "kal_diphone": ("voice_kal_diphone", "festvox-kallpc16k", 105.0),
    "ked_diphone": ("voice_ked_diphone", "festvox-kdlpc16k", 105.0),
    "us-slt-hts": ("voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts", None),
}
"""festival voice -> (selecting function, Debian package, mean pitch in Hz; None: fixed pitch)."""

RATES = (0.85, 1.0, 1.15)
"""Relative speaking rates of `english_voices` (1.0 = the engine's default)."""

PITCHES = (0.8, 1.0, 1.25)
"""Relative pitches of `english_voices` (voices with a fixed pitch only get 1.0)."""

ESPEAK_WPM = 175
TIMEOUT_S = 120


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker at one speaking rate and pitch.

    Attributes:
        engine: "espeak-ng", "flite" or "festival".
        name: an espeak-ng accent (e.g. "en-gb-scotland"), a flite voice ("kal16", "awb", "rms",
            "slt") or a festival voice ("kal_diphone", "ked_diphone", "us-slt-hts").
        variant: espeak-ng only: a variant such as "m3" or "f2" ("" = none).
        rate: relative speaking rate (1.0 = default, 1.15 = 15 % faster).
        pitch: relative pitch (1.0 = default).
    """

    engine: str
    name: str
    variant: str = ""
    rate: float = 1.0
    pitch: float = 1.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise PrunekitError(f"unknown speech engine {self.engine!r}: use one of {ENGINES}")
        if self.variant and self.engine != "espeak-ng":
            raise PrunekitError(f"voice {self.name!r}: only espeak-ng voices take a variant")
        if not (0.5 <= self.rate <= 2.0 and 0.5 <= self.pitch <= 2.0):
            raise PrunekitError(
                f"voice {self.name!r}: rate={self.rate} and pitch={self.pitch} must be in [0.5, 2]"
            )
        if self.pitch != 1.0 and _base_pitch(self) is None:
            raise PrunekitError(f"voice {self.speaker}: its pitch is fixed, use pitch=1.0")

    @property
    def speaker(self) -> str:
        """The voice without rate and pitch, e.g. "espeak-ng:en-gb-scotland+m3"."""
        return f"{self.engine}:{self.name}" + (f"+{self.variant}" if self.variant else "")

    @property
    def id(self) -> str:
        """A stable string naming the voice, e.g. "espeak-ng:en-us+f2@r1.15p0.80"."""
        return f"{self.speaker}@r{self.rate:.2f}p{self.pitch:.2f}"

    @classmethod
    def from_id(cls, voice_id: str) -> Voice:
        """Parse `Voice.id` back into a Voice."""
        try:
            speaker, params = voice_id.split("@")
            engine, name = speaker.split(":", 1)
            name, _, variant = name.partition("+")
            rate, pitch = params.removeprefix("r").split("p")
            return cls(engine, name, variant, float(rate), float(pitch))
        except ValueError:
            raise PrunekitError(
                f"voice id {voice_id!r} is malformed: write ENGINE:NAME[+VARIANT]@rRATEpPITCH, "
                "e.g. espeak-ng:en-us+f2@r1.00p1.00"
            ) from None


def _base_pitch(voice: Voice) -> float | None:
    if voice.engine == "espeak-ng":
        return 50.0  # espeak-ng's -p scale, 0..99
    if voice.engine == "flite":
        return FLITE_VOICES.get(voice.name)
    return FESTIVAL_VOICES[voice.name][2] if voice.name in FESTIVAL_VOICES else None


def english_voices() -> list[Voice]:
    """Every voice the default corpus draws from (espeak-ng, flite and festival), in a fixed order.

    espeak-ng: 8 accents x 16 variants x `RATES` x `PITCHES`; flite: kal16, awb, rms, slt;
    festival: kal_diphone, ked_diphone, us-slt-hts; each at every rate and (where it can change)
    every pitch.
    """
    speakers = [("espeak-ng", a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    speakers += [("flite", name, "") for name in FLITE_VOICES]
    speakers += [("festival", name, "") for name in FESTIVAL_VOICES]
    voices = []
    for engine, name, variant in speakers:
        fixed = _base_pitch(Voice(engine, name, variant)) is None
        for rate, pitch in itertools.product(RATES, (1.0,) if fixed else PITCHES):
            voices.append(Voice(engine, name, variant, rate, pitch))
    return voices


def _run(cmd: list[str], voice: Voice) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        package = PACKAGES[voice.engine]
        raise PrunekitError(
            f"{cmd[0]} is not installed (needed for voice {voice.speaker}): install it with "
            f"`sudo apt-get install {package}` (or run `make setup`)"
        )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)


@functools.cache
def installed_voices(engine: str) -> frozenset[str]:
    """Names of the voices (and espeak-ng variants, as "+m3") an installed engine offers."""
    program = "text2wave" if engine == "festival" else engine
    if shutil.which(program) is None or shutil.which(engine) is None:
        return frozenset()
    if engine == "espeak-ng":
        rows = subprocess.run([engine, "--voices=en"], capture_output=True, text=True).stdout
        names = {line.split()[1] for line in rows.splitlines()[1:] if line.split()}
        rows = subprocess.run([engine, "--voices=variant"], capture_output=True, text=True).stdout
        names |= {"+" + line.split()[4].removeprefix("!v/") for line in rows.splitlines()[1:]}
        return frozenset(names)
    if engine == "flite":
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
        return frozenset(out.split(":", 1)[-1].split())
    out = subprocess.run(
        ["festival", "-b", "(print (voice.list))"], capture_output=True, text=True
    ).stdout
    known = set(out.strip("()\n ").split())
    return frozenset(name for name, spec in FESTIVAL_VOICES.items() if spec[0][6:] in known)


def check_voice(voice: Voice) -> None:
    """Raise a one-line PrunekitError naming the Debian package if `voice` cannot be synthesized."""
    program = "text2wave" if voice.engine == "festival" else voice.engine
    if shutil.which(program) is None:
        _run([program], voice)  # raises, naming the package
    have = installed_voices(voice.engine)
    wanted = [voice.name] + ([f"+{voice.variant}"] if voice.variant else [])
    missing = [w for w in wanted if w not in have]
    if not missing:
        return
    package = {
        "espeak-ng": "espeak-ng-data",
        "flite": "flite",
        "festival": FESTIVAL_VOICES.get(voice.name, ("", "festival"))[1],
    }[voice.engine]
    raise PrunekitError(
        f"{voice.engine} has no voice {' '.join(missing)}: install it with "
        f"`sudo apt-get install {package}`, or pick one of {sorted(have)[:12]}"
    )


def _espeak_command(voice: Voice) -> list[str]:
    name = voice.name + (f"+{voice.variant}" if voice.variant else "")
    speed, pitch = round(ESPEAK_WPM * voice.rate), min(99, round(50 * voice.pitch))
    return ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch)]


def _flite_command(voice: Voice) -> list[str]:
    cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1 / voice.rate:.4f}"]
    base = FLITE_VOICES.get(voice.name)
    if base is not None:
        cmd += ["--setf", f"int_f0_target_mean={base * voice.pitch:.1f}"]
    return cmd


def _festival_command(voice: Voice) -> list[str]:
    select, _, base = FESTIVAL_VOICES[voice.name]
    if base is None:  # HTS: hts_engine's own speed option
        rate = f'(set! hts_engine_params (append hts_engine_params \'(("-r" {voice.rate:.4f}))))'
        return ["text2wave", "-eval", f"({select})", "-eval", rate]
    stretch = f"(Parameter.set 'Duration_Stretch {1 / voice.rate:.4f})"
    f0 = f"(target_f0_mean {base * voice.pitch:.1f}) (target_f0_std {14.0 * voice.pitch:.1f})"
    pitch = f"(set! int_lr_params '({f0} (model_f0_mean 170) (model_f0_std 34)))"
    return ["text2wave", "-eval", f"({select})", "-eval", stretch, "-eval", pitch]


def _command(voice: Voice, text_file: Path, out: Path) -> list[str]:
    """The engine's command line that reads `text_file` and writes a wav to `out`."""
    if voice.engine == "espeak-ng":
        return _espeak_command(voice) + ["-w", str(out), "-f", str(text_file)]
    if voice.engine == "flite":
        return _flite_command(voice) + ["-f", str(text_file), "-o", str(out)]
    return _festival_command(voice) + [str(text_file), "-o", str(out)]


def synthesize(text: str, voice: Voice, *, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Speak `text` with `voice`, offline.

    Args:
        text: what to say (plain English; numbers are best spelled out, see `synth_text`).
        voice: the voice.
        sample_rate: rate of the returned audio (the engines' own rates are resampled).

    Returns:
        (T,) float32 waveform in [-1, 1] at `sample_rate`.

    Raises:
        PrunekitError: the engine or the voice is not installed (names the Debian package), or
            the engine fails.
    """
    if not text.strip():
        raise ValueError("synthesize needs some text to speak")
    check_voice(voice)
    with tempfile.TemporaryDirectory(prefix="prunekit-tts-") as tmp:
        text_file, out = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        text_file.write_text(text.strip() + "\n", encoding="utf-8")
        proc = _run(_command(voice, text_file, out), voice)
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise PrunekitError(
                f"{voice.engine} failed to speak with voice {voice.id} ({why}): check that "
                f"`{PACKAGES[voice.engine]}` and its voices are installed (`make setup`)"
            )
        return load_audio(out, sample_rate, warn=False)


VOICE_PACKAGES = {
    "espeak-ng": ("espeak-ng-data",),
    "flite": ("flite",),
    "festival": ("festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts", "festlex-cmu"),
}
"""Debian packages holding each engine's voices and lexicons (their versions key the cache)."""


def _package_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown"
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
    )
    return proc.stdout.strip() or "missing"


@functools.cache
def engine_versions() -> dict[str, str]:
    """Each engine's version line and its voice packages' versions ("missing" if not installed).

    Part of the synthetic corpus's cache key: another synthesizer version renders other audio.
    """
    out = {}
    for engine in ENGINES:
        if shutil.which(engine) is None:
            out[engine] = "missing"
            continue
        proc = subprocess.run([engine, "--version"], capture_output=True, text=True)
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        line = next((ln for ln in lines if "version" in ln.lower()), lines[0] if lines else "")
        packages = "; ".join(f"{p} {_package_version(p)}" for p in VOICE_PACKAGES[engine])
        out[engine] = f"{line} | {packages}"
    return out
