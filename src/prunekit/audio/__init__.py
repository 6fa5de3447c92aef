"""Speech data: wav files, offline synthesizers, speech corpora, augmentation and log-mel features."""
