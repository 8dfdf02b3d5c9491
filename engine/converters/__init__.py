"""Converters: the objects that turn input audio into converted audio, chunk by chunk."""
