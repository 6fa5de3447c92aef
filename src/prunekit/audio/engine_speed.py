"""How fast each synthesizer renders speech: seconds of audio per CPU second."""

from __future__ import annotations

import resource
import time

from prunekit.audio.synth import FESTIVAL_VOICES, FLITE_VOICES, Voice, synthesize

SENTENCES = (
    "now is the winter of our discontent made glorious summer by this sun of york.",
    "if music be the food of love, play on; give me excess of it.",
    "in the beginning god created the heavens and the earth.",
)


def speed_voices() -> list[Voice]:
    """One voice per synthesizer voice: espeak-ng (two accents), every flite and festival voice."""
    voices = [Voice("espeak-ng", "en-us"), Voice("espeak-ng", "en-gb-scotland", "f3")]
    voices += [Voice("flite", name) for name in FLITE_VOICES]
    return voices + [Voice("festival", name) for name in FESTIVAL_VOICES]


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def engine_speed(
    voices: list[Voice] | None = None, repeats: int = 1
) -> list[dict[str, float | str]]:
    """Render `SENTENCES` `repeats` times with each voice (subprocess + resampling to 16 kHz).

    Returns:
        One row per voice: voice id, audio seconds, CPU seconds, wall seconds, and
        audio seconds per CPU second (`x_realtime_cpu`).
    """
    rows = []
    for voice in voices or speed_voices():
        synthesize(SENTENCES[0], voice)  # warm up (voice checks, page cache)
        audio, cpu0, wall0 = 0.0, _cpu(), time.perf_counter()
        for _ in range(repeats):
            for text in SENTENCES:
                audio += synthesize(text, voice).shape[0] / 16000
        cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
        rows.append(
            {
                "voice": voice.id,
                "audio_seconds": audio,
                "cpu_seconds": cpu,
                "wall_seconds": wall,
                "x_realtime_cpu": audio / max(cpu, 1e-9),
            }
        )
    return rows
