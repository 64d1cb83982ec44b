"""`python -m bench [name [options]]`: run one benchmark with its options, or every registered one with defaults.

Each benchmark is a module with `main(argv: list[str]) -> int`. To add one, append a line to BENCHMARKS.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "webhook_intake": "bench.webhook_intake",
    "login_load": "bench.login_load",
    "booking": "bench.booking",
    "big_order": "bench.big_order",
    "governor": "bench.governor",
    "poller": "bench.poller",
    "retention": "bench.retention",
    "books_check": "bench.books_check",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nbenchmarks: " + ", ".join(BENCHMARKS))
        return 0
    if argv and argv[0] not in BENCHMARKS:
        print(f"unknown benchmark {argv[0]!r}; known: {', '.join(BENCHMARKS)}")
        return 2
    runs = [(argv[0], argv[1:])] if argv else [(name, []) for name in BENCHMARKS]
    status = 0
    for name, options in runs:
        print(f"== {name}", flush=True)
        status = max(status, importlib.import_module(BENCHMARKS[name]).main(options))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
