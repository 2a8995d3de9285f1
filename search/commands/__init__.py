"""The `sarsweep` commands, one module each (or a small group): `add(subparsers)` builds the
command's parser beside `run(args)`, what it does. search/cli.py assembles them in this order
(the order of `sarsweep --help`) and owns the error policy.

A new command: a module here with `add` and `run`, listed below, and a test that runs it
through the installed `sarsweep` script (tests/search/test_cli.py).
"""

from __future__ import annotations

from search.commands import (
    cache,
    dashboard,
    db,
    demo,
    evaluate,
    export,
    init,
    launch,
    plan,
    promote,
    reaper,
    report,
    status,
    train,
    worker,
)

COMMANDS = (train, init, plan, worker, launch, promote, export, evaluate, status, reaper, report, dashboard, cache, db,
            demo)
