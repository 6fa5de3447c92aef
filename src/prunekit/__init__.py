"""prunekit: make neural LMs and RNN speech models small and fast enough for on-device ASR, and prove it."""

__version__ = "0.1.0"
