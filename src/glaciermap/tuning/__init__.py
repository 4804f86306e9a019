"""Hyperparameter sweeps with Optuna over the project's one training function."""
