"""How a benchmark reports: human progress on stderr-like lines, then one JSON object as the last line."""

from __future__ import annotations

import json
import platform
import resource
import sys
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def say(message: str) -> None:
    print(message, flush=True)


def finish(name: str, figures: dict[str, Any]) -> None:
    """Print the benchmark's figures as the single JSON object on its last line."""
    record = {"bench": name, **figures, "peak_rss_mb": peak_rss_mb(), "python": platform.python_version()}
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()
