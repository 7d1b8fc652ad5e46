"""Print mutation scores per area from ``mutmut results --all true`` (``make mutation``).

Reads mutmut's ``<mutant>: <status>`` lines on stdin. Score = killed (by a failing test, a timeout,
a crash or the type checker) / every mutant checked; mutants no test reaches count as survivors (an
unreached rule is an untested one). Exits 1 when ``keyplane.policy`` scores under the threshold.
"""

from __future__ import annotations

import sys
from collections import Counter

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
NOT_CHECKED = {"skipped", "not checked", "check was interrupted by user"}
AREAS = ("keyplane.policy", "keyplane.reconcile.ssodomain")


def scores(lines: list[str]) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {area: Counter() for area in AREAS}
    for line in lines:
        name, sep, status = line.strip().partition(": ")
        area = next((a for a in AREAS if name.startswith(a + ".")), None)
        if sep and area is not None and status not in NOT_CHECKED:
            found[area]["killed" if status in KILLED else status] += 1
    return found


def main(threshold: float) -> int:
    failed = False
    for area, counts in scores(sys.stdin.read().splitlines()).items():
        total = sum(counts.values())
        if not total:
            continue
        score = 100.0 * counts["killed"] / total
        others = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status != "killed")
        print(f"mutation score of {area}: {score:.1f}% ({counts['killed']} of {total} killed; {others or 'none left'})")
        failed |= area == "keyplane.policy" and score < threshold
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0))
