"""What the tests and benchmarks share and no package ships: a throwaway PostgreSQL cluster
(cluster.py), the trivial-objective load test (loadtest.py), HTTP and campaign helpers.
The tests' conftest puts tests/ on sys.path; a benchmark adds it itself."""

from __future__ import annotations

from pathlib import Path

LOADTEST = Path(__file__).with_name("loadtest.py")
"""Run as `python LOADTEST --storage URL --study NAME ...` (see its docstring)."""
