"""Inference: sliding-window prediction, registry loading, outlines."""
