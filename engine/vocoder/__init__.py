"""Vocoders: turn frame parameters (F0, spectral envelope, aperiodicity) into audio."""
