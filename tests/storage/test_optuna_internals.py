"""The one door to Optuna's internals (storage/optuna_internals.py): pinned, and the only door."""

from __future__ import annotations

import re
import subprocess

import optuna
from conftest import REPO

from storage import optuna_internals


def test_every_private_optuna_name_sarsweep_uses_is_where_it_was() -> None:
    """An Optuna upgrade that moves one of them fails here, with one line per thing moved."""
    problems = optuna_internals.missing()
    assert problems == [], f"Optuna {optuna.__version__} moved what storage/optuna_internals.py uses: " + "; ".join(
        problems)


def test_the_pin_would_notice_a_moved_name(monkeypatch) -> None:
    """The check above can fail: with a private method gone, it names it."""
    from optuna.storages import RDBStorage

    monkeypatch.delattr(RDBStorage, "_create_new_trial")
    assert "RDBStorage._create_new_trial is gone" in optuna_internals.missing()


def test_no_other_module_of_the_four_packages_names_an_optuna_private() -> None:
    """What the issue's grep checks: `_x` attributes of Optuna objects and Optuna's private
    modules appear in the door module only."""
    files = subprocess.run(["git", "ls-files", "errors", "models", "training", "storage", "search"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    optuna_private = re.compile(
        r"optuna(\.\w+)*\._(?!_)\w+"                    # optuna.storages._rdb, optuna.study._tell, ...
        r"|\b(study|trial|frozen|t|storage|backend)\._(?!_)\w+"   # study._study_id, trial._trial_id, ...
        r"|\._(backend|thread_local|study_id|trial_id|storage|tell_with_warning)\b")
    for private in ("sid = study._study_id", "from optuna.storages._rdb.models import TrialModel",
                    "rdb = storage._backend", "study._thread_local.cached_all_trials = None"):
        assert optuna_private.search(private), private  # the search can find what it looks for
    assert not optuna_private.search('print(optuna.__version__, trial.number)')
    found = []
    for name in files:
        if not name.endswith(".py") or name == "storage/optuna_internals.py":
            continue
        for number, line in enumerate((REPO / name).read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if optuna_private.search(code):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []
