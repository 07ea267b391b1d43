"""`make demo`: start the C test server, run a 20-second headless Locust with FastCUser, print the stats."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from locust_c.testserver import TestServer  # noqa: E402


def print_exact(data: dict) -> None:
    """The percentiles locust-c measured (exact to 3 significant digits), next to Locust's rounded table."""
    print(f"\nlocust-c exact percentiles (ms), from {data['source']} histograms:")
    print(f"{'Name':32} {'reqs':>7} {'fails':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'max':>8}")
    for row in [*data["endpoints"], data["total"]]:
        label = f"{row['method']} {row['name']}".strip()
        cells = [row[k] for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
        print(f"{label:32} {row['num_requests']:>7} {row['num_failures']:>6} "
              + " ".join(f"{c:>8.3f}" if c is not None else f"{'-':>8}" for c in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="test server port (0: any free port)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--run-time", default="20s")
    args = parser.parse_args()
    results = ROOT / "demo_results.json"
    with TestServer(port=args.port) as server:
        print(f"test server on {server.url}; running {args.users} FastCUsers for {args.run_time}", flush=True)
        cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "examples" / "locustfile.py"), "--headless",
               "-u", str(args.users), "-r", str(args.users), "-t", args.run_time, "--host", server.url,
               "--only-summary", "--results-json", str(results)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        code = subprocess.call(cmd, env=env, cwd=ROOT)
    if results.exists():
        print_exact(json.loads(results.read_text()))
    # The locustfile makes some requests fail on purpose (404s): Locust's exit code 1 says so. The demo succeeded
    # when Locust ran to the end; any other code is an error.
    return 0 if code in (0, 1) else code


if __name__ == "__main__":
    raise SystemExit(main())
