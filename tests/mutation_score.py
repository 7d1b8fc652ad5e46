"""Print the mutation score from mutmut's CI/CD stats (``make mutation``); exit 1 under a threshold.

Score = killed (by a failing test, a timeout or a crash) / every mutant mutmut made. Mutants no test
reaches count as survivors: an unreached rule is an untested one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(stats_path: str, threshold: float) -> int:
    stats = json.loads(Path(stats_path).read_text())
    killed = stats["killed"] + stats["timeout"] + stats["segfault"]
    survived = stats["survived"] + stats["no_tests"] + stats["suspicious"]
    total = killed + survived
    score = 100.0 * killed / total if total else 0.0
    print(
        f"mutation score of operator/keyplane/policy: {score:.1f}% "
        f"({killed} of {total} mutants killed; {stats['survived']} survived, "
        f"{stats['no_tests']} not reached by any test)"
    )
    return 0 if score >= threshold else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
