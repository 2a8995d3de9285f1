"""The docs: a site that builds strictly, a short README, and commands the real CLI takes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from search.cli import build_parser

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """mkdocs-material; --strict turns a broken link, a missing page or a page left out of the nav
    into a failure."""
    done = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "search" / "search_index.json").is_file()
    built = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert {p.stem for p in (REPO / "docs").glob("*.md")} - {"index"} <= built
    # The site's quickstart is README.md's, included (one text): every line of its block is on the page.
    import html
    import re

    page = html.unescape(re.sub(r"<[^>]+>", "", (tmp_path / "site" / "quickstart" / "index.html").read_text()))
    block = re.search(r"<!-- quickstart -->\n```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block and all(line.split("#")[0].strip() in page for line in block.group(1).splitlines())
    assert 'href="quickstart/"' in (tmp_path / "site" / "index.html").read_text()  # the home page links to it


def test_the_readme_is_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


COMMANDS = "|".join(("train", "init", "worker", "launch", "promote", "export", "evaluate", "status", "reaper",
                     "report", "dashboard", "cache", "db", "demo"))


def sarsweep_commands(text: str) -> list[str]:
    """Every `sarsweep COMMAND ...` in the text's code blocks, continuation lines joined."""
    found = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            code = re.sub(r"\s#\s.*$", "", line).strip()
            for match in re.finditer(rf"(?:^|[;&|(]\s*|\$\()\s*((?:[A-Z_]+=\S+\s+)*sarsweep\s+(?:{COMMANDS})\b[^;&|)]*)",
                                     code):
                found.append(re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", match.group(1)).strip())
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_sarsweep_command_in_the_docs_is_one_the_cli_takes(page: Path) -> None:
    """A renamed option or command leaves no stale line in the docs: each command shown parses with
    the real parser (bad options exit 2, as a user would see)."""
    parser = build_parser()
    commands = sarsweep_commands(page.read_text())
    refused = []
    for command in commands:
        argv = shlex.split(command)[1:]
        if "--" in argv and argv[0] == "launch":  # what follows -- goes to each worker
            worker = ["worker", *argv[argv.index("--") + 1:]]
            argv = argv[:argv.index("--") + 1]
            try:
                parser.parse_args(worker)
            except SystemExit:
                refused.append(command)
        try:
            parser.parse_args(argv)
        except SystemExit:
            refused.append(command)
    assert refused == []


def test_the_docs_show_commands_at_all() -> None:
    """The search above finds commands (it would pass on pages it cannot read)."""
    total = sum(len(sarsweep_commands(p.read_text())) for p in PAGES)
    assert total >= 40
    assert sarsweep_commands("```bash\nX=1 sarsweep status --campaign c.yaml  # a comment\n```") == [
        "sarsweep status --campaign c.yaml"]


TESTS = {p: p.read_text() for p in (REPO / "tests").rglob("*.py")}


def passed_in_a_test(token: str) -> re.Pattern[str]:
    """`token` as the tests pass it to the CLI: its own string literal ("--per-file"), or a word of
    a literal command line ("sarsweep worker --stage quick")."""
    t = re.escape(token)
    return re.compile(rf"""["']{t}["']|["']{t}[\s=][^"'\n]*["']|["'][^"'\n]*\s{t}(?:[\s=][^"'\n]*)?["']""")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_in_the_docs_is_one_a_test_runs(page: Path) -> None:
    """Each command shown (its subcommand and every option it uses) is run together by one test file,
    so what a page shows is what CI has run, not only what parses."""
    unrun = []
    for command in sarsweep_commands(page.read_text()):
        argv = shlex.split(command)[1:]
        need = argv[:2] if argv[0] in ("db", "cache") else argv[:1]
        need += sorted({a.split("=")[0] for a in argv if a.startswith("-") and a != "--"})
        if not any(all(passed_in_a_test(n).search(text) for n in need) for text in TESTS.values()):
            unrun.append(command)
    assert unrun == []


def test_the_run_check_tells_a_run_option_from_an_unrun_one() -> None:
    assert passed_in_a_test("--per-file").search('run_cli("evaluate", "--per-file")')
    assert passed_in_a_test("--stage").search('cmd = "sarsweep worker --stage quick"')
    assert not passed_in_a_test("--stage").search('"--stages"') and not passed_in_a_test("--stage").search("# --stage")
