"""In a real browser (Debian's headless Chromium through its chromedriver): the docs site's search,
served over HTTP, finds what it should; the dashboard's Best Trial is a trial of the search, never a
seed re-run that scored higher.

`.ci/run` installs chromium and chromium-driver; under CI a missing browser fails these tests
instead of skipping them.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import REPO, run_cli, start_cli
from support.cluster import free_port
from support.web import get as _get

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        message = f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian's chromium and chromium-driver; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_for(driver: Any, condition: Any, timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_the_docs_sites_search_finds_sigterm_over_http(browser: Any, tmp_path: Path) -> None:
    """A search for "SIGTERM" on the built site lists the pages that document it (it once stayed on
    "Initializing search")."""
    from selenium.webdriver.common.by import By

    site = tmp_path / "site"
    built = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "-q", "-d", str(site)], cwd=REPO,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-2000:]
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/")
        box = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input.md-search__input"))
        box.click()  # the header's search field, as a person opens it on a desktop-wide window
        box.send_keys("SIGTERM")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item"))
        meta = browser.find_element(By.CSS_SELECTOR, ".md-search-result__meta").text
        links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")]
    finally:
        server.shutdown()
    # Every page that mentions it is counted (Material renders the first results and more on
    # scrolling), and each result shown is one of them.
    documented = {p.stem for p in (REPO / "docs").glob("*.md") if "SIGTERM" in p.read_text()}
    assert meta == f"{len(documented)} matching documents", (meta, documented)
    found = {link.split("/")[3] for link in links}
    assert found and found <= documented, (documented, links)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


def test_the_dashboards_best_trial_is_never_a_seed_rerun(browser: Any, write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Trial 2 re-runs trial 0's config with another seed and scores higher: `sarsweep dashboard`
    shows trial 0 as the Best Trial, the re-run's note says what it is, and the study note says why."""
    from optuna_dashboard import get_note

    from search.campaign.dashboard import note_config

    url = f"sqlite:///{tmp_path / 'd.db'}"
    campaign = write_campaign(noise_seeds=1)
    assert run_cli("init", "--campaign", str(campaign), "--storage", url, cwd=tmp_path).returncode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="t.baseline.quick", storage=url)
        told, notes = {}, {}
        for value, attrs in ((16.6, {}), (15.0, {}), (17.2, None)):
            attrs = attrs if attrs is not None else {"noise_of": told[16.6], "noise_seed": 1}
            study.enqueue_trial({}, user_attrs=attrs)
            trial = study.ask()
            note_config(trial, {"lr": 0.001})
            notes[value] = get_note(trial)
            study.tell(trial, value)
            told[value] = trial.number
    best, rerun = study.trials[told[16.6]], study.trials[told[17.2]]
    assert notes[17.2].startswith(f"### trial {rerun.number}: seed re-run 1 of trial {best.number}")
    assert notes[16.6].startswith(f"### trial {best.number}: config")
    assert rerun.value > best.value  # the re-run would be Optuna's best trial on a plain storage

    port = free_port()
    server = start_cli("dashboard", "--storage", url, "--artifacts", str(tmp_path / "art"), "--port", str(port),
                       cwd=tmp_path)
    try:
        _get(f"http://127.0.0.1:{port}/api/studies")  # waits until it serves
        browser.get(f"http://127.0.0.1:{port}/dashboard/studies/{study._study_id}")
        wait_for(browser, lambda d: "Best Trial (number=" in text_of(d))
        page = text_of(browser)
        browser.get(f"http://127.0.0.1:{port}/dashboard/studies/{study._study_id}/note")
        wait_for(browser, lambda d: "Seed noise" in text_of(d))
        note = text_of(browser)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert f"Best Trial (number={best.number})" in page, page[:2000]
    assert f"Best Trial (number={rerun.number})" not in page
    assert "never the Best Trial shown here" in note, note  # the study note, on its page

