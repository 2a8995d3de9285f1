"""`sarsweep cache list|prune`: the node's prepared-data cache, seen and kept in bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from search.cli import main
from training.cache import cache_root
from training.config import DataConfig
from training.data import prepare

DAY = 86400


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SARSWEEP_CACHE", str(root))
    return root


def listed(capfd: pytest.CaptureFixture[str]) -> list[dict]:
    capfd.readouterr()
    assert main(["cache", "list", "--json"]) == 0
    return json.loads(capfd.readouterr().out)["entries"]


def age_entry(prepared_path: Path, days: float) -> None:
    """Make an entry look last used `days` ago (its index's mtime records the last use)."""
    stamp = time.time() - days * DAY
    os.utime(prepared_path.with_suffix(".json"), (stamp, stamp))


def test_list_names_each_entrys_data_and_prune_removes_only_the_unused(
        cache: Path, tsx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    old_cfg = DataConfig(root=str(tsx), include=["*.png"], patch_size=32)
    new_cfg = DataConfig(root=str(tsx), include=["*.png"], patch_size=64)
    old, new = prepare(old_cfg), prepare(new_cfg)
    entries = {e["name"]: e for e in listed(capfd)}
    assert {Path(p).stem for p in (old.cache_path, new.cache_path)} <= set(entries)
    record = entries[old.cache_path.stem]["data"]
    # The root as resolved (the cache key's): ../shared may be a symlink, as in a CI checkout.
    assert (record["root"], record["patch_size"], record["patches"], record["files"]) == (
        str(tsx.resolve()), 32, len(old.patches), 4)
    assert entries[old.cache_path.stem]["bytes"] >= old.patches.nbytes

    age_entry(old.cache_path, 40)
    age_entry(new.cache_path, 10)
    new_written = new.cache_path.stat().st_mtime_ns
    assert main(["cache", "prune", "--older-than", "30d"]) == 0
    out = capfd.readouterr().out
    assert f"removed patches   {old.cache_path.stem}" in out and new.cache_path.stem not in out
    assert not old.cache_path.exists() and new.cache_path.exists()

    again = prepare(new_cfg)  # still cached: read, not decoded again, and marked as used now
    assert again.cache_path.stat().st_mtime_ns == new_written
    assert time.time() - again.cache_path.with_suffix(".json").stat().st_mtime < 60
    remade = prepare(old_cfg)  # pruned: decoded again, to the same patches
    np.testing.assert_array_equal(remade.patches, old.patches)


def test_max_size_removes_the_least_recently_used_first_and_dry_run_nothing(
        cache: Path, tsx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    made = [prepare(DataConfig(root=str(tsx), include=["*.png"], patch_size=size)) for size in (16, 24, 32)]
    for days, p in zip((3, 1, 2), made, strict=True):  # 16 px least recently used, then 32 px
        age_entry(p.cache_path, days)
    sizes = {e["name"]: e["bytes"] for e in listed(capfd)}
    limit = sizes[made[1].cache_path.stem] + 1  # room for one: the most recently used stays

    assert main(["cache", "prune", "--max-size", str(limit), "--dry-run"]) == 0
    assert "would remove" in capfd.readouterr().out
    assert all(p.cache_path.exists() for p in made)

    assert main(["cache", "prune", "--max-size", str(limit)]) == 0
    out = capfd.readouterr().out
    assert out.index(made[0].cache_path.stem) < out.index(made[2].cache_path.stem)  # oldest first
    assert [p.cache_path.exists() for p in made] == [False, True, False]
    assert [e["name"] for e in listed(capfd)] == [made[1].cache_path.stem]


def test_prune_waits_for_a_preparation_under_way(cache: Path, tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """A process preparing data holds the cache's shared lock; prune must not delete under it."""
    released = tmp_path / "released"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from training.cache import in_use\n"
         f"with in_use(Path({str(cache)!r})):\n"
         "    print('held', flush=True); time.sleep(1.5); Path(sys.argv[1]).touch()\n",
         str(released)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["cache", "prune", "--max-size", "0"]) == 0
        assert released.exists(), "prune returned while a preparation held the cache"
        assert "waiting for data preparation" in capfd.readouterr().err
    finally:
        holder.wait(timeout=30)


def test_workers_starting_together_decode_the_data_once(cache: Path, s1: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`launch` starts a node's workers at once and all find the cache cold: one prepares, the
    others wait for its entry (each decoded every raster beside it: N times the memory and CPU).
    Threads here, each with a lock file of its own opened, as separate processes have."""
    import threading

    import training.data.dataset as dataset

    read = dataset.read_raster
    decoded: list[str] = []

    def counting(path: Path, cfg: DataConfig) -> np.ndarray:
        decoded.append(Path(path).name)
        time.sleep(0.002)  # a slower disk: the preparers surely overlap
        return read(path, cfg)

    monkeypatch.setattr(dataset, "read_raster", counting)
    cfg = DataConfig(root=str(s1), include=["*/Patch/*.tif"], patch_size=32, stride=16, small_chips="pad")
    start = threading.Barrier(4)
    results: list[object] = []

    def worker() -> None:
        start.wait()
        results.append(prepare(cfg))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    sources = len(list(s1.glob("*/Patch/*.tif")))
    assert len(results) == 4 and sources > 100
    assert len(decoded) == sources  # each raster once, not once per worker
    first = results[0]
    for other in results[1:]:
        assert other.cache_path == first.cache_path and other.files == first.files
        np.testing.assert_array_equal(other.patches, first.patches)
    assert [e["kind"] for e in listed_now()] == ["patches"]  # the lock file is no entry
    assert main(["cache", "prune", "--max-size", "0"]) == 0
    assert not (cache / "locks").exists()


def listed_now() -> list[dict]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["cache", "list", "--json"]) == 0
    return json.loads(out.getvalue())["entries"]


def test_leftovers_go_and_an_open_memory_map_outlives_its_entry(
        cache: Path, tsx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    prepared = prepare(DataConfig(root=str(tsx), include=["*.png"], patch_size=32))
    expected = np.array(prepared.patches[::97])
    killed = cache / "patches" / f".{'0' * 16}.npy.4242.deadbeef.tmp"  # a writer killed mid-way
    killed.write_bytes(b"\0" * 1000)
    half = cache / "patches" / f"{'1' * 16}.npy"  # killed between the array and its index
    half.write_bytes(b"\0" * 1000)

    assert main(["cache", "prune"]) == 0
    assert not killed.exists() and not half.exists() and prepared.cache_path.exists()
    assert main(["cache", "prune", "--max-size", "0"]) == 0
    assert not any((cache / "patches").iterdir())
    np.testing.assert_array_equal(prepared.patches[::97], expected)  # a running trial reads on
    assert "nothing to remove" in (capfd.readouterr(), main(["cache", "prune"]), capfd.readouterr().out)[2]


def test_an_entry_from_before_entries_described_themselves_is_listed(
        cache: Path, tsx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    prepared = prepare(DataConfig(root=str(tsx), include=["*.png"], patch_size=32))
    index_path = prepared.cache_path.with_suffix(".json")
    index = json.loads(index_path.read_text())
    del index["data"]
    index_path.write_text(json.dumps(index))
    capfd.readouterr()
    assert main(["cache", "list"]) == 0
    assert f"{len(prepared.patches):,} patches of 32 px from 4 file(s) (no record of where)" in capfd.readouterr().out


def test_entries_say_their_settings_and_when_no_sarsweep_reads_them_again(
        cache: Path, tsx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Two entries of one folder used to look the same in the listing: one prepared by an older
    sarsweep (its key no longer matches), or one cut by tiles or with a no-data value."""
    old = prepare(DataConfig(root=str(tsx), include=["*.png"], patch_size=32))
    index_path = old.cache_path.with_suffix(".json")
    index = json.loads(index_path.read_text())
    index["data"]["version"] = 1
    index_path.write_text(json.dumps(index))
    tiled = prepare(DataConfig(root=str(tsx), include=["*.png"], patch_size=32, split="tiles", tile_size=256,
                               nodata=0))
    capfd.readouterr()
    assert main(["cache", "list"]) == 0
    lines = {line.split()[1]: line for line in capfd.readouterr().out.splitlines()[2:]}
    assert lines[old.cache_path.stem].endswith("from 4 file(s) (prepared by an older sarsweep: never read again)")
    assert lines[tiled.cache_path.stem].endswith("from 4 file(s), tiles of 256 px, nodata 0")


@pytest.mark.parametrize(("args", "message"), [
    (["prune", "--older-than", "3x"], "argument --older-than: expected an age like 30d, 12h or 90m, got '3x'"),
    (["prune", "--max-size=-5G"], "argument --max-size: must not be negative, got -5G"),
    (["prune", "--max-size", "lots"], "argument --max-size: expected a size like 50G, 500M or 0, got 'lots'"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str, cache: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["cache", *args])
    assert exit_.value.code == 2
    assert capfd.readouterr().err.strip().splitlines()[-1].endswith(message)


def test_a_cache_path_that_is_a_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("SARSWEEP_CACHE", str(blocker))
    for action in ("list", "prune"):
        assert main(["cache", action]) == 2
        err = capfd.readouterr().err.strip()
        assert err == f"sarsweep: error: $SARSWEEP_CACHE: {blocker} is a file, not a folder", err
    assert blocker.read_text() == "x"
    assert cache_root() == blocker
