"""Fuzz the ingest stage at scale: the properties of tests/test_fuzz.py on many more inputs.

    python scripts/fuzz_ingest.py --examples 10000 --seed 1

Every input is read with ``read_opinions`` and, for ``--fit-percent`` of those that
read and are small, fitted with ``fit_study``. Anything raised but ``DataError``
is an escape: the first (smallest) input of each kind of escape is saved under
``--out`` with ``case.json``, and ``--replay FOLDER`` runs a saved one again.
Prints the counts and exits 1 if anything escaped.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, seed, settings, strategies as st  # noqa: E402

import test_fuzz  # noqa: E402  (the strategies and the property live with the suite)
from test_fuzz import Case, attempt, cases, readable_cases  # noqa: E402

INPUTS = st.one_of(cases(), cases(), cases(), readable_cases())
"""A quarter of the inputs are tables that mostly read, so that fitting gets exercised too."""


class Hang(Exception):
    """An input that took longer than ``--timeout`` seconds."""


def _on_alarm(signum, frame):
    raise Hang("no answer within the time limit")


def escape_kind(error: BaseException) -> tuple[str, str]:
    """An escape's type and the innermost persona_engine line it came through: one bug, one kind."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "persona_engine" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return type(error).__name__, where


def run(examples: int, random_seed: int, fit_percent: int, timeout: int, out: Path) -> int:
    counts: Counter = Counter()
    escapes: dict[tuple[str, str], tuple[int, Case, BaseException]] = {}
    signal.signal(signal.SIGALRM, _on_alarm)

    @seed(random_seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(case=INPUTS)
    def property_(case):
        counts["run"] += 1
        signal.alarm(timeout)
        try:
            counts[attempt(case, fit_percent)] += 1
        except Exception as error:  # the property's failure: recorded, and fuzzing goes on
            counts["escaped"] += 1
            kind, size = escape_kind(error), sum(len(c) for _, c in case.files)
            if kind not in escapes or size < escapes[kind][0]:
                escapes[kind] = (size, case, error)
        finally:
            signal.alarm(0)
        if counts["run"] % 500 == 0:
            print(f"... {counts['run']} run, {counts['escaped']} escaped", flush=True)

    started = time.monotonic()
    property_()
    read = counts["read"] + counts["fit refused"] + counts["fitted"]
    print(f"examples run: {counts['run']} in {time.monotonic() - started:.0f} s (seed {random_seed})")
    print(f"read OK: {read} (fitted {counts['fitted']}, fit refused with DataError {counts['fit refused']})")
    print(f"DataError: {counts['read refused'] + counts['fit refused']} "
          f"(on read {counts['read refused']}, on fit {counts['fit refused']})")
    print(f"escaped: {counts['escaped']} ({len(escapes)} kinds)")
    for number, ((name, where), (size, case, error)) in enumerate(sorted(escapes.items()), start=1):
        folder = out / f"{number:02d}-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        case.save(folder)
        (folder / "traceback.txt").write_text("".join(traceback.format_exception(error)))
        print(f"\n[{number}] {name} at {where}: {str(error)[:300]}")
        print(f"    smallest input ({size} bytes, delivered as {case.delivery!r}, format={case.format!r}):")
        for file_name, content in case.files:
            print(f"    {file_name}: {content[:300]!r}{' ...' if len(content) > 300 else ''}")
        print(f"    saved in {folder} (replay: python scripts/fuzz_ingest.py --replay {folder})")
    if escapes:
        print(f"\nreproducers saved under {out}")
    return 1 if escapes else 0


def replay(folder: Path, fit_percent: int) -> int:
    case = Case.load(folder)
    print(attempt(case, fit_percent))  # an escape raises with its traceback
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-percent", type=int, default=20,
                        help="share of small readable inputs also fitted (each fit takes ~1 s)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds before an input counts as a hang")
    parser.add_argument("--out", type=Path, default=None, help="where reproducers go (default: a temp folder)")
    parser.add_argument("--replay", type=Path, default=None, help="run one saved reproducer again")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.replay, 100)
    out = args.out or Path(tempfile.mkdtemp(prefix="fuzz_ingest_"))
    print(f"fuzzing read_opinions and fit_study ({test_fuzz.FIT_SETTINGS}); reproducers go under {out}")
    return run(args.examples, args.seed, args.fit_percent, args.timeout, out)


if __name__ == "__main__":
    sys.exit(main())
