"""Campaigns replayed on a table of recorded learning curves: sarsweep's own decisions with a simulated
clock, for comparing search strategies (bench/simulate.py) and forecasting what a campaign costs."""
