#!/usr/bin/env python3
"""One command for a fresh clone (standard library only, any Python >= 3.11).

    python3 dev.py [up]              run everything (embedded Postgres unless DATABASE_URL is set)
    python3 dev.py test [ARGS...]    ruff, ruff format --check, mypy, lint-imports, pytest ARGS
                                     (no ARGS: the whole suite, with its coverage floor)
    python3 dev.py bench [ARGS...]   the benchmark suite (bench/suite.py ARGS, ~15 minutes):
                                     bench/results/latest.json and docs/benchmarks.md

Each first creates .venv and installs into it what it needs, again when pyproject.toml has
changed: running installs the project with its [embedded] extra; testing adds [dev] (pytest,
ruff, mypy, Playwright, ...); the benchmarks add [bench] (pgqueuer, matplotlib, py-spy, ...).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
VENV = REPO / ".venv"
VENV_PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# What each command installs (the project's extras): running needs only the app.
EXTRAS = {"up": ("embedded",), "test": ("dev", "embedded"), "bench": ("bench",)}
# The whole suite (pytest with no arguments) measures coverage, and fails under its floor
# ([tool.coverage.report] fail_under); a selection of tests would only miss it. It also lists
# its slowest tests, where to look when it outgrows its time.
COVERAGE_ARGS = ["--cov", "--cov-report=term", "--durations=25"]


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 -- run by whatever python3 a machine has
        print(f"dev.py needs Python >= 3.11, this is {sys.version.split()[0]}", file=sys.stderr)
        return 2
    command, args = (argv[0], argv[1:]) if argv else ("up", [])
    if command in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    if command not in EXTRAS:
        print(f"unknown command {command!r}; try: python3 dev.py --help", file=sys.stderr)
        return 2
    os.chdir(REPO)
    ensure_installed(EXTRAS[command])
    if command == "up":
        if args:
            print("dev.py up takes no arguments", file=sys.stderr)
            return 2
        py = str(VENV_PYTHON)
        os.execv(py, [py, "-m", "app.devserver"])
    if command == "bench":
        py = str(VENV_PYTHON)
        os.execv(py, [py, "bench/suite.py", *args])
    return run_checks(args)


def stamp_path(extras: tuple[str, ...]) -> Path:
    """Holds the hash of the pyproject.toml these extras were last installed from; inside .venv
    so a new venv reinstalls."""
    return VENV / f".dev-install-{'+'.join(sorted(extras))}"


def installed(extras: tuple[str, ...], wanted: str) -> bool:
    """Whether ``extras`` (or a superset of them) were installed from this pyproject.toml."""
    for stamp in VENV.glob(".dev-install-*"):
        done = set(stamp.name.removeprefix(".dev-install-").split("+"))
        if done >= set(extras) and stamp.read_text().strip() == wanted:
            return True
    return False


def ensure_installed(extras: tuple[str, ...]) -> None:
    """Create .venv if missing; install the project with ``extras`` unless they are installed
    from this very pyproject.toml already."""
    if not VENV_PYTHON.exists():
        print("creating virtualenv in .venv ...", flush=True)
        run_or_exit([sys.executable, "-m", "venv", str(VENV)])
    wanted = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if installed(extras, wanted):
        return
    target = f".[{','.join(extras)}]"
    print(f"installing dependencies (pip install -e '{target}') ...", flush=True)
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run_or_exit([*pip, "-e", target])
    stamp_path(extras).write_text(wanted + "\n")


def run_checks(pytest_args: list[str]) -> int:
    """Run every check even when one fails, so one run shows all problems."""
    py = str(VENV_PYTHON)
    checks = [
        ("ruff check", [py, "-m", "ruff", "check", "."]),
        ("ruff format --check", [py, "-m", "ruff", "format", "--check", "."]),
        ("mypy", [py, "-m", "mypy"]),
        # The import contracts of pyproject.toml ([tool.importlinter]); no cache dir in the tree.
        ("lint-imports", [str(VENV_PYTHON.parent / "lint-imports"), "--no-cache", "--no-logo"]),
        ("pytest", [py, "-m", "pytest", *(pytest_args or COVERAGE_ARGS)]),
    ]
    failed: list[str] = []
    exit_code = 0
    for name, cmd in checks:
        print(f"--- {name}", flush=True)
        code = subprocess.call(cmd)
        if code != 0:
            failed.append(f"{name} (exit {code})")
            exit_code = exit_code or code
    if failed:
        print(f"FAILED: {', '.join(failed)}", flush=True)
        return exit_code
    print("all checks passed", flush=True)
    return 0


def run_or_exit(cmd: list[str]) -> None:
    code = subprocess.call(cmd)
    if code != 0:
        print(f"failed (exit {code}): {' '.join(cmd)}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
