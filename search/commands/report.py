"""`sarsweep report --campaign F`: comparison table, quick->full fidelity and cost per stage.

    sarsweep report --campaign configs/campaign.yaml -o report.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from search.commands.common import Subparsers, campaign_command, load_campaign_of, open_storage_of


def add(commands: Subparsers) -> None:
    report = campaign_command(commands, "report", "comparison table, quick->full fidelity and cost per stage",
                              artifacts=True)
    report.add_argument("-o", "--output", default="report.md", help="Markdown report (default report.md)")
    report.add_argument("--html", help="also write a self-contained HTML report with the plots")
    report.add_argument("--held-out", metavar="DIR", help="also score each variant's chosen config on the rasters "
                                                          "in DIR (data no trial saw), as `sarsweep evaluate` does")
    report.add_argument("--held-out-include", nargs="+", metavar="GLOB",
                        help="files under --held-out (default: the campaign's data.include)")
    report.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from search.report.collect import held_out_lines, summary_line
    from search.report.render import write_report
    from storage import artifacts_root
    from training.files import require_dir

    campaign = load_campaign_of(args)
    html_path = Path(args.html) if args.html else None
    held_out = None
    if args.held_out:
        require_dir(args.held_out, "--held-out")
        held_out = (artifacts_root(args.artifacts), args.held_out, args.held_out_include)
    def say(line: str) -> None:  # what it is doing, on stderr: stdout keeps the results for scripts
        print(f"report: {line}", file=sys.stderr, flush=True)

    report = write_report(open_storage_of(args, "report"), campaign, Path(args.output), html_path, held_out,
                          say=say)
    print(summary_line(report))
    for line in held_out_lines(report):
        print(line)
    for f in report.fidelity:
        print(f.sentence())
    print(f"report written to {args.output}" + (f" and {args.html}" if args.html else ""))
    return 0
