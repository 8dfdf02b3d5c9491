"""Inference core of voxflip: features, converters, vocoders and backends.

Nothing here starts threads, opens devices or sockets, or imports torch at
module level: the live path imports this package and must start fast.
"""
