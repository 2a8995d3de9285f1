"""`sarsweep cache list|prune`: this node's prepared-data cache ($SARSWEEP_CACHE).

    sarsweep cache list
    sarsweep cache prune --older-than 30d --max-size 50G
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from errors import ConfigError
from search.commands.common import Subparsers, age, byte_size


def add(commands: Subparsers) -> None:
    cache = commands.add_parser("cache", help="list or prune this node's prepared-data cache ($SARSWEEP_CACHE)")
    cache_actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    listed = cache_actions.add_parser("list", help="every entry: its data, size and when it was last used")
    listed.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listed.set_defaults(func=run_list)
    prune = cache_actions.add_parser("prune", help="remove unused entries (and leftovers of killed preparations)")
    prune.add_argument("--older-than", type=age, metavar="AGE", help="remove entries unused for longer: 30d, 12h, 90m")
    prune.add_argument("--max-size", type=byte_size, metavar="SIZE",
                       help="then remove the least recently used until the rest fit: 50G, 500M, 0 for all")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    prune.set_defaults(func=run_prune)


def _cache_root() -> Path:
    from training.cache import cache_root

    root = cache_root()
    if root.exists() and not root.is_dir():
        raise ConfigError("$SARSWEEP_CACHE", f"{root} is a file, not a folder")
    return root


def run_list(args: argparse.Namespace) -> int:
    import json
    import shutil

    from training.cache import contents, listing

    found = contents(_cache_root())
    if not args.json:
        print("\n".join(listing(found)))
        return 0
    free = shutil.disk_usage(found.root).free if found.root.is_dir() else None
    print(json.dumps({"root": str(found.root), "bytes": found.bytes, "free_bytes": free,
                      "inductor_bytes": found.inductor_bytes, "entries": [e.to_dict() for e in found.entries]},
                     indent=2))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from training.cache import prune, prune_lines

    def waiting() -> None:
        print("waiting for data preparation under way on this cache to finish...", file=sys.stderr, flush=True)

    if args.older_than is None and args.max_size is None:
        print("without --older-than or --max-size, only leftovers of killed preparations go")
    result = prune(args.older_than, args.max_size, args.dry_run, _cache_root(), on_wait=waiting)
    print("\n".join(prune_lines(result, args.dry_run)))
    return 0
