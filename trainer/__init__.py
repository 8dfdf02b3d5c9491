"""Training side of voxflip (torch models, corpora, training loops, export).

The trainer shares feature code with :mod:`voxflip.engine` so that training and
inference see identical features.
"""
