"""Wait until every URL given answers 200: ``wait_ready.py <timeout_s> <url>...``.

``scripts/run.sh`` runs it beside the services to say when the local system is ready.
Exits 0 once all answered 200, 1 when the timeout passed first. Standard library only,
so it runs before the project's virtual environment matters.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request


def answers_ok(url: str) -> bool:
    """True when a GET of ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str]) -> int:
    """Poll the URLs until all are ready or the timeout passes."""
    deadline = time.monotonic() + float(argv[0])
    waiting = list(argv[1:])
    while waiting and time.monotonic() < deadline:
        waiting = [url for url in waiting if not answers_ok(url)]
        if waiting:
            time.sleep(0.5)
    return 1 if waiting else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
