"""Data, trainer and metrics for one run of one config; knows nothing about Optuna."""
