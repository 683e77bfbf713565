"""How quickly soft-prompt training answers the Steer page: the estimate, the first step, Cancel.

Works on a copy of a study (the bundled GSS sample by default) with the
default LLM, and prints:

* the time estimate's own wall time, from the speed of the study's earlier
  runs (``training.json``) and, with those records removed, from two timed
  steps; beside the estimate it gives;
* from the start of :func:`~persona_engine.steer.study_steering.train_steering`
  in a background thread (as the Steer page runs it): seconds until the
  progress callback first knows the run's length, and until step 1;
* Cancel: seconds from setting the cancel event after step ``--cancel-after``
  to the end of the thread, and the seconds per step for comparison (target:
  within a step). The copy is deleted afterwards; the study itself is never
  written.

    python bench/bench_training_control.py
    python bench/bench_training_control.py --study sample_data/studies/brexit-consensus
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from persona_engine.llm import load_llm
from persona_engine.steer.study_steering import estimate_steering_seconds, train_steering
from persona_engine.study import Study

ROOT = Path(__file__).resolve().parents[1]


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(ROOT / "sample_data/studies/gss_spending"))
    parser.add_argument("--model", default=None, help="an LLM folder or hub id (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--cancel-after", type=int, default=3, help="steps before Cancel is pressed")
    args = parser.parse_args()

    llm = load_llm(args.model)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "study"
        shutil.copytree(args.study, folder)
        study = Study.load(folder)

        estimate, seconds = timed(estimate_steering_seconds, study, llm)
        print(f"estimate from earlier runs:   {seconds:6.2f} s to compute, says {estimate / 60:.1f} min")
        for record in folder.rglob("training.json"):
            record.unlink()
        study = Study.load(folder)
        estimate, seconds = timed(estimate_steering_seconds, study, llm)
        print(f"estimate from two timed steps:{seconds:6.2f} s to compute, says {estimate / 60:.1f} min")

        marks: dict[str, float] = {}
        cancel = threading.Event()

        def progress(stage: str, step: int, total: int, info) -> None:
            now = time.perf_counter() - started
            if total and "length known" not in marks:
                marks["length known"] = now
            if step >= 1 and "step 1" not in marks:
                marks["step 1"] = now
            if step >= args.cancel_after and not cancel.is_set():
                marks["cancel"] = now
                marks["steps at cancel"] = step
                cancel.set()

        started = time.perf_counter()
        worker = threading.Thread(target=lambda: marks.setdefault("result", train_steering(
            study, llm, progress=progress, cancel=cancel)[1]))
        worker.start()
        worker.join()
        ended = time.perf_counter() - started
        result = marks["result"]
        per_step = (marks["cancel"] - marks["step 1"]) / max(marks["steps at cancel"] - 1, 1)
        print(f"run length known after        {marks.get('length known', float('nan')):6.2f} s")
        print(f"step 1 after                  {marks.get('step 1', float('nan')):6.2f} s")
        print(f"seconds per step              {per_step:6.2f} s")
        print(f"Cancel after step {marks['steps at cancel']}: stopped  {ended - marks['cancel']:6.2f} s later "
              f"(stopped: {result.stopped}, steps: {result.steps})")


if __name__ == "__main__":
    main()
