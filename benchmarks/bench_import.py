"""F-4: ``import byok_nb`` in a fresh interpreter (target: under 300 ms).

    .venv/bin/python benchmarks/bench_import.py            # 20 cold imports
    .venv/bin/python benchmarks/bench_import.py --repeat 50

Each run is a new ``python -c`` process that times only the import (``perf_counter`` around it),
so interpreter start-up is not counted; the bare interpreter's own start-up is printed beside it
for scale. Also lists which heavy libraries the import pulled in (none is the design).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("pandas", "numpy", "sqlalchemy", "boto3", "botocore", "ipywidgets", "httpx", "cryptography",
         "pydantic", "genai_prices", "matplotlib")
PROBE = (
    "import sys, time\n"
    "t = time.perf_counter()\n"
    "import byok_nb\n"
    "ms = (time.perf_counter() - t) * 1000\n"
    f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
    "print(f'{ms:.3f}', ','.join(heavy))\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import_ms, startup_ms, heavy = [], [], set()
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
        ms, _, loaded = out.strip().partition(" ")
        import_ms.append(float(ms))
        heavy.update(filter(None, loaded.split(",")))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        startup_ms.append((time.perf_counter() - t) * 1000)
    print(f"F-4 import byok_nb: median {statistics.median(import_ms):.1f} ms, "
          f"max {max(import_ms):.1f} ms over {args.repeat} cold processes (target 300 ms)")
    print(f"    bare interpreter start-up, for scale: median {statistics.median(startup_ms):.1f} ms")
    print(f"    heavy libraries loaded by the import: {', '.join(sorted(heavy)) or 'none'}")


if __name__ == "__main__":
    main()
