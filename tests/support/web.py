"""HTTP from tests: a page of a server that may still be starting."""

from __future__ import annotations

import time
import urllib.request


def get(url: str, timeout: float = 60) -> bytes:
    """The body at `url`, retried every 0.2 s until `timeout` while the server is not up yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
