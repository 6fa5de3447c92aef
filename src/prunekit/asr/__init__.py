"""Speech recognition between features and words: output units, the CTC task, decoding with LMs."""
