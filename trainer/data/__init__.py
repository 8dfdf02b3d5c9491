"""Training data: the manifest format, corpus loaders, the synthetic corpus, cached features."""
