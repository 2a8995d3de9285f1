"""Storage URLs -> Optuna storages, and where checkpoints and artifacts live (search-service issue)."""
