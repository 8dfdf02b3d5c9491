"""Feature extraction shared by inference and training: frames, F0, WORLD parameters, log-mel, rhythm."""
