"""``make bench``: run every benchmark script in turn (each prints its own ratios)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: each script with its arguments; pricing runs twice: at 10% of national scale (pbc vs the
#: hand-written SQL; pandas runs out of memory there) and at 3%, where pandas fits
ORDER = [["bench_synth.py"], ["bench_load.py"], ["bench_pricing.py"],
         ["bench_pricing.py", "--scale", "0.03"], ["bench_budgets.py"], ["bench_risk.py"],
         ["bench_indicators.py"], ["bench_monitoring.py"], ["bench_web.py"]]


def main() -> int:
    failed = 0
    for name, *args in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n######## {' '.join([name, *args])}", flush=True)
        rc = subprocess.call([sys.executable, str(script), *args])
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
