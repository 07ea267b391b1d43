"""Run the closed and the open model against a test server that stalls 500 ms every 5 s, and draw both.

    .venv/bin/python examples/open_model/plot.py [--seconds 30] [--out examples/open_model/open_closed.png]

Each model runs for ``--seconds`` against its own stalling server (``python -m locust_c.testserver --stall-every 5
--stall-for 500``); the picture shows every request's latency over time, and the exact percentiles of the run
from ``--results-json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from locust_c.testserver import TestServer  # noqa: E402

STALL_EVERY_S, STALL_FOR_MS = 5.0, 500


def run(model: str, seconds: int, work: Path) -> tuple[list[tuple[float, float, float]], dict]:
    samples, results = work / f"{model}.txt", work / f"{model}.json"
    with TestServer(stall_every=STALL_EVERY_S, stall_for_ms=STALL_FOR_MS) as server:
        env = {**os.environ, "MODEL": model, "SAMPLES": str(samples)}
        subprocess.run([sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
                        "--only-summary", "-u", "10", "-r", "10", "-t", f"{seconds}s", "-H", server.url,
                        "--results-json", str(results)], env=env, check=True, capture_output=True)
    rows = [tuple(map(float, line.split())) for line in samples.read_text().splitlines()]
    return rows, json.loads(results.read_text())  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--out", default=str(HERE / "open_closed.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory() as tmp:
        closed, closed_results = run("closed", args.seconds, Path(tmp))
        opened, open_results = run("open", args.seconds, Path(tmp))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    for ax, rows, results, title in ((axes[0], closed, closed_results, "closed model: 10 users, 30 req/s each"),
                                     (axes[1], opened, open_results, "open model: arrival_rate(300), 10 users")):
        t0 = rows[0][0]
        times = [r[0] - t0 for r in rows]
        total = results["total"]
        label = f"service time (p99 {total['p99_ms']:.1f} ms)"
        if "p99_corrected_ms" in total:
            ax.scatter(times, [r[2] for r in rows], s=2, color="tab:red",
                       label=f"from when it was due (p99 {total['p99_corrected_ms']:.0f} ms)")
        ax.scatter(times, [r[1] for r in rows], s=2, color="tab:blue", label=label)
        ax.set_title(f"{title}\n{total['num_requests']} requests, {total['rps']:.0f}/s")
        ax.set_xlabel("seconds into the run")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", markerscale=4)
    axes[0].set_ylabel("latency (ms)")
    fig.suptitle(f"The same service, stalling {STALL_FOR_MS} ms every {STALL_EVERY_S:g} s")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"closed: p99 {closed_results['total']['p99_ms']:.1f} ms over {closed_results['total']['num_requests']} "
          f"requests; open: p99 {open_results['total']['p99_ms']:.1f} ms, corrected p99 "
          f"{open_results['total']['p99_corrected_ms']:.0f} ms over {open_results['total']['num_requests']}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
