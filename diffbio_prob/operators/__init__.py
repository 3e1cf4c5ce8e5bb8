"""Flax NNX operators with the DiffBio operator API."""
