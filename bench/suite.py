"""Every budget of docs/design.md measured in one run, and docs/benchmarks.md written from it.

    python3 dev.py bench [--only NAME[,NAME...]] [--database-url URL]

Runs the benchmarks one after another (each waits for a quiet machine before each phase, as it
does alone), collects the budget rows each writes into its JSON, and writes them with the
machine, its load and the code under test to bench/results/latest.json; then regenerates
docs/benchmarks.md and its plots (docs/benchmarks/*.png) from that file. Takes about 16 minutes
on 2 cores. Exits 1 if a budget is missed or a benchmark fails to run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from harness import (
    REPO_ROOT,
    RESULTS_DIR,
    add_database_url_option,
    load_average,
    machine_ticks,
    run_main,
    source_version,
    steal_percent,
    write_results,
)

LATEST = RESULTS_DIR / "latest.json"
PAGE = REPO_ROOT / "docs" / "benchmarks.md"
PLOTS_DIR = REPO_ROOT / "docs" / "benchmarks"


@dataclass(frozen=True)
class Step:
    """One benchmark run of the suite: a script, its options, the JSON it writes."""

    name: str
    script: str
    options: tuple[str, ...] = ()

    @property
    def results_path(self) -> Path:
        return RESULTS_DIR / f"{Path(self.script).stem}.json"


STEPS = (
    Step(
        "commit_to_client",
        "commit_to_client.py",
        ("--push", "both", "--one-at-a-time", "500", "--events", "1000"),
    ),
    Step("write_overhead_16", "write_overhead.py", ("--writers", "16", "--seconds", "10")),
    Step(
        "write_overhead_64",
        "write_overhead.py",
        ("--writers", "64", "--rounds", "1", "--seconds", "10"),
    ),
    Step("drain_backlog", "drain_backlog.py"),
    Step("idle_connections", "idle_connections.py", ("--compression", "deflate")),
    Step("replay_and_scale", "replay_and_scale.py", ("--events", "5000", "--large-events", "0")),
    Step("fanout_replay", "fanout_replay.py"),
    Step("push_throughput", "push_throughput.py", ("--pushes", "10000", "--latency-ms", "100")),
    Step(
        "sustained",
        "soak.py",
        (
            "--seconds",
            "60",
            "--clients",
            "1000",
            "--rate",
            "1000",
            "--writers",
            "8",
            "--p99-budget-ms",
            "20",
        ),
    ),
    Step("rest_throughput", "rest_throughput.py", ("--clients", "16")),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = ",".join(step.name for step in STEPS)
    parser.add_argument("--only", default=names, help=f"steps to run, of: {names}")
    add_database_url_option(parser)
    return parser.parse_args()


def machine(database_url: str) -> dict[str, Any]:
    """What the figures were measured on."""
    with psycopg.connect(database_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('fsync', 'synchronous_commit', 'server_version', 'max_connections')"
            ).fetchall()
        )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "postgres": settings,
    }


def run_step(step: Step, database_url: str) -> dict[str, Any]:
    """Run one benchmark; return its rows, load and exit code."""
    print(f"\n=== {step.name}: bench/{step.script} {' '.join(step.options)}", flush=True)
    step.results_path.unlink(missing_ok=True)
    load_before, ticks_before = load_average(), machine_ticks()
    started = time.monotonic()
    argv = [sys.executable, str(REPO_ROOT / "bench" / step.script), *step.options]
    code = subprocess.call([*argv, "--database-url", database_url], cwd=REPO_ROOT)
    outcome: dict[str, Any] = {
        "name": step.name,
        "command": f"bench/{step.script} {' '.join(step.options)}".strip(),
        "exit_code": code,
        "seconds": round(time.monotonic() - started),
        "load_before": load_before,
        "load_after": load_average(),
        "steal_percent": steal_percent(ticks_before, machine_ticks()),
        "rows": [],
    }
    if step.results_path.exists():
        results = json.loads(step.results_path.read_text())
        outcome["rows"] = results.get("rows", [])
        if step.name == "commit_to_client":
            outcome["cdf_ms"] = {
                mode: results[f"push_{mode}"]["one_at_a_time"]["receipt_minus_response_ms"]["cdf"]
                for mode in ("off", "on")
                if f"push_{mode}" in results
            }
        if step.name == "replay_and_scale":
            outcome["scale_events_per_s"] = scale_rates(results["scale"])
    return outcome


def scale_rates(scale: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Events/s delivered at the largest run of each layout: ``{"postgres, 2 web": {"4": r}}``."""
    rates: dict[str, dict[str, float]] = {}
    for mode, runs in scale.items():
        for run in runs.values():
            phase = run["phases"][max(run["phases"], key=int)]
            line = rates.setdefault(f"{mode}, {run['webs']} web", {})
            line[str(run["dispatchers"])] = phase["delivered_events_per_s"] or 0.0
    return rates


def write_plots(latest: dict[str, Any]) -> list[str]:
    """The plots of the page, as PNGs in docs/benchmarks/; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")  # no screen here
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    PLOTS_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    cdfs = next((s["cdf_ms"] for s in latest["steps"] if s.get("cdf_ms")), None)
    if cdfs:
        fig, ax = plt.subplots(figsize=(7, 4))
        for mode, values in cdfs.items():
            ax.plot(values, [2 * i for i in range(len(values))], label=f"Web Push {mode}")
        ax.set_xscale("log")
        # Plain milliseconds on the log axis; matplotlib's default labels (3 x 10^0) overlap.
        ax.set_xticks([1, 2, 5, 10, 20, 50, 100])
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("REST 201 response -> socket receipt, ms (log scale)")
        ax.set_ylabel("percentile")
        ax.set_title("Commit -> client latency, one event at a time")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(PLOTS_DIR / "commit_to_client_cdf.png", dpi=100)
        plt.close(fig)
        written.append("commit_to_client_cdf.png")
    scale = next(
        (s["scale_events_per_s"] for s in latest["steps"] if s.get("scale_events_per_s")), None
    )
    if scale:
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, by_dispatchers in scale.items():
            counts = sorted(by_dispatchers, key=int)
            ax.plot(
                [int(c) for c in counts], [by_dispatchers[c] for c in counts], "o-", label=label
            )
        ax.set_xticks(sorted({int(c) for line in scale.values() for c in line}))
        ax.set_xlabel("dispatcher processes")
        ax.set_ylabel("events/s delivered")
        ax.set_ylim(bottom=0)
        ax.set_title("Scale-out: delivery rate by dispatchers, web processes and manager")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(PLOTS_DIR / "scale_out.png", dpi=100)
        plt.close(fig)
        written.append("scale_out.png")
    return written


def render_page(latest: dict[str, Any], plots: list[str]) -> str:
    """docs/benchmarks.md from bench/results/latest.json."""
    m = latest["machine"]
    pg = m["postgres"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `python3 dev.py bench` (bench/suite.py) from `bench/results/latest.json`;"
        " do not edit by hand. Each row is judged against a baseline measured in the same run"
        " where the budget has one. How each benchmark works is in its script's docstring;"
        " the budgets are in [design.md](design.md#budgets).",
        "",
        f"- Measured {latest['finished']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']}"
        f" GiB, Python {m['python']}, PostgreSQL {pg.get('server_version')} with"
        f" fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')}.",
        f"- Code under test: {latest['source']}. Whole suite: {latest['minutes']} minutes.",
        f"- CPU stolen by the hypervisor (other guests' share of this virtual machine's cores):"
        f" {latest['steal_percent']:g}% over the suite; per step below. Figures measured under"
        " steal are lower than the machine gives when it has its cores to itself.",
        "",
        "| budget | measured | same-run baseline | ratio | budget | |",
        "|---|---|---|---|---|---|",
    ]
    for step in latest["steps"]:
        for row in step["rows"]:
            ratio = "" if row["ratio"] is None else f"{row['ratio']:g}"
            verdict = "pass" if row["passed"] else "**FAIL**"
            lines.append(
                f"| {row['what']} | {row['measured']} | {row['baseline']} | {ratio}"
                f" | {row['budget']} | {verdict} |"
            )
    lines += [
        "",
        "## The runs",
        "",
        "| step | command | minutes | 1-min load before / after | CPU stolen | exit |",
        "|---|---|---|---|---|---|",
    ]
    for step in latest["steps"]:
        lines.append(
            f"| {step['name']} | `{step['command']}` | {step['seconds'] / 60:.1f}"
            f" | {step['load_before'][0]:.2f} / {step['load_after'][0]:.2f}"
            f" | {step['steal_percent']:g}% | {step['exit_code']} |"
        )
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}](benchmarks/{name})" for name in plots]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse_args()
    wanted = set(args.only.split(","))
    unknown = wanted - {step.name for step in STEPS}
    if unknown:
        print(f"unknown steps: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started, ticks_before = time.monotonic(), machine_ticks()
    latest: dict[str, Any] = {
        "source": source_version(),
        "machine": machine(args.database_url),
        "steps": [run_step(step, args.database_url) for step in STEPS if step.name in wanted],
    }
    latest["minutes"] = round((time.monotonic() - started) / 60, 1)
    latest["steal_percent"] = steal_percent(ticks_before, machine_ticks())
    latest["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write_results(latest, LATEST)
    PAGE.write_text(render_page(latest, write_plots(latest)))
    rows = [row for step in latest["steps"] for row in step["rows"]]
    failed = [row["what"] for row in rows if not row["passed"]]
    broken = [step["name"] for step in latest["steps"] if not step["rows"]]
    print(f"wrote {PAGE.relative_to(REPO_ROOT)}")
    print(f"{len(rows) - len(failed)}/{len(rows)} budgets met")
    for what in failed:
        print(f"  FAIL {what}")
    for name in broken:
        print(f"  {name} gave no budget rows (it failed to run: see its output above)")
    return 1 if failed or broken else 0


if __name__ == "__main__":
    run_main(main)
