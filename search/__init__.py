"""Campaigns, studies, workers and the `sarsweep` command line."""
