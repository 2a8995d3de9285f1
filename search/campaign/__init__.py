"""The campaign: its config (stages, search space, references), its studies, the roles its trials play, and
what it exports (the dashboard notes, the best config as YAML)."""
