"""Evaluation: the papers' metrics and the systems `voxflip eval` can name."""
