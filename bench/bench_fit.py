"""How long the whole ``fit`` takes on wide and large data (issue 17).

Times :func:`persona_engine.study.fit_study` end to end (embedding, the
choice of cohort space, cohorts with the choice of k and its stability,
the stability of the chosen cohorts, the map) on synthetic opinions with
planted cohorts (:func:`persona_engine.synthetic.make_opinions`), and
prints the seconds of each stage and the peak memory of the fit. Each size
runs in a fresh subprocess, so that the peak resident memory is that size's
own; the peak is reset after the data are drawn (Linux ``clear_refs``), so it
is the fit's, not the generator's.

Sizes (respondents x questions, fill) and targets (2 CPU cores):

* ``polis``: 2,000 x 600 agree / pass / disagree statements, 10% answered
  (about 60 votes each, like a large Polis conversation): at most 60 s, and
  at most 60 s for one split of ``persona-engine evaluate`` (``--evaluate-split``);
* ``survey``: 10,000 x 100 (half five-point scales) at 50% fill: at most 60 s;
* ``large``: 100,000 x 200 at 50% fill: at most 3 min.

    python bench/bench_fit.py                          # all three sizes
    python bench/bench_fit.py --sizes polis --evaluate-split
    python bench/bench_fit.py --sizes survey --profile /tmp/fit.prof
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES = {
    # name: (respondents, likert questions, statements, share missing, target seconds)
    "polis": (2_000, 0, 600, 0.9, 60.0),
    "survey": (10_000, 50, 50, 0.5, 60.0),
    "large": (100_000, 100, 100, 0.5, 180.0),
}
EVALUATE_TARGET_S = 60.0


def make_data(size: str):
    from persona_engine.synthetic import make_opinions

    n, n_likert, n_statements, missing, _ = SIZES[size]
    return make_opinions(n_respondents=n, n_cohorts=5, n_likert=n_likert, n_statements=n_statements,
                         missingness=missing, random_state=0)


def reset_peak_memory() -> bool:
    """Reset this process's peak resident memory (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak resident memory of this process since the last reset, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageClock:
    """Seconds per stage of ``fit_study``, from its progress callback and two wrapped functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stage, self._since = None, time.perf_counter()

    def switch(self, stage: str | None) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + now - self._since
        self._stage, self._since = stage, now

    def progress(self, stage: str, step: int, total: int, info) -> None:
        # fit_study reports ("cohorts", 1, 2) after the cohorts and ("cohorts", 2, 2) after their stability.
        if stage == "embedding" and self._stage is None:
            self.switch("embedding")
        elif stage == "cohorts" and step == 0:
            self.switch("cohorts (k)")
        elif stage == "cohorts" and step == 1:
            self.switch("stability")
        elif stage == "map" and step == 0:
            self.switch("map")
        elif stage == "map" and step == total:
            self.switch(None)

    def wrap_space_choice(self) -> None:
        """Time the choice of cohort space apart from the cohorts themselves."""
        from persona_engine.cohorts import space as cohort_space

        choose = cohort_space.choose_cohort_space

        def timed(*args, **kwargs):
            self.switch("cohort space")
            try:
                return choose(*args, **kwargs)
            finally:
                self.switch("cohorts (k)")

        cohort_space.choose_cohort_space = timed


def run_fit(size: str, profile: str | None) -> dict:
    from persona_engine.study import fit_study

    data = make_data(size)
    reset_peak_memory()
    clock = StageClock()
    clock.wrap_space_choice()
    start = time.perf_counter()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        study = profiler.runcall(fit_study, data, random_state=0, progress=clock.progress)
        profiler.dump_stats(profile)
    else:
        study = fit_study(data, random_state=0, progress=clock.progress)
    seconds = time.perf_counter() - start
    fitted = study.manifest["fitted"]
    return {"seconds": seconds, "stages": clock.seconds, "peak_mb": peak_memory_mb(),
            "n_cohorts": study.n_cohorts, "space": fitted["cohort_space"],
            "subsampled": study.manifest.get("subsampled", {}),
            "planted_ari": _planted_ari(study)}


def run_evaluate_split(size: str) -> dict:
    from persona_engine.evaluation.quality_table import quality_table

    data = make_data(size)
    reset_peak_memory()
    start = time.perf_counter()
    table = quality_table(data, seeds=[0])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": peak_memory_mb(),
            "accuracy": dict(zip(table["method"], [round(v, 4) for v in table["accuracy"]]))}


def _planted_ari(study) -> float:
    from sklearn.metrics import adjusted_rand_score

    return round(float(adjusted_rand_score(study.data.metadata["planted_cohort"], study.labels)), 3)


def child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    result = run_evaluate_split(args.child) if args.evaluate_split else run_fit(args.child, args.profile)
    print(json.dumps(result))


def measure(size: str, evaluate_split: bool, profile: str | None) -> dict:
    command = [sys.executable, __file__, "--child", size]
    command += ["--evaluate-split"] if evaluate_split else []
    command += ["--profile", profile] if profile else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", choices=list(SIZES), default=list(SIZES),
                        help="which sizes to fit (default: all)")
    parser.add_argument("--evaluate-split", action="store_true",
                        help="also time one split of 'persona-engine evaluate' at the polis size")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="write a cProfile of the fit to FILE (with one size)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"cores available: {len(os.sched_getaffinity(0))}, load average: "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    for size in args.sizes:
        n, n_likert, n_statements, missing, target = SIZES[size]
        result = measure(size, False, args.profile)
        verdict = "ok" if result["seconds"] <= target else "TOO SLOW"
        stages = ", ".join(f"{stage} {s:.1f} s" for stage, s in result["stages"].items())
        print(f"{size}: {n:,} x {n_likert + n_statements} at {1 - missing:.0%} fill: whole fit "
              f"{result['seconds']:.1f} s (target {target:.0f} s: {verdict}), peak {result['peak_mb']:.0f} MiB\n"
              f"  stages: {stages}\n"
              f"  {result['n_cohorts']} cohorts in the {result['space']} space, adjusted Rand index with "
              f"the planted cohorts {result['planted_ari']}; subsampled: {result['subsampled'] or 'nothing'}",
              flush=True)
    if args.evaluate_split:
        result = measure("polis", True, None)
        verdict = "ok" if result["seconds"] <= EVALUATE_TARGET_S else "TOO SLOW"
        print(f"polis: one evaluate split {result['seconds']:.1f} s (target {EVALUATE_TARGET_S:.0f} s: "
              f"{verdict}), peak {result['peak_mb']:.0f} MiB\n  accuracy: {result['accuracy']}", flush=True)


if __name__ == "__main__":
    main()
