"""The campaign's decisions as pure functions of plain trial records and counts: what to claim next, when
a stage has ended, whom to promote, which seed re-runs are due, and the verdicts. No storage, no torch:
the worker, `sarsweep promote`, the report and the simulator (bench/simulate.py) all call them."""
