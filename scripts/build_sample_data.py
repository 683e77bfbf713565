"""Rebuild what sample_data/ ships beside the real data sets.

* sample_data/synthetic/: planted-cohort opinions from persona_engine.synthetic,
  as a wide table with its codebook, and the same statements as a Polis export;
* sample_data/studies/gss_spending/: the study `make app` opens (GSS 2018
  spending, fitted with the defaults and seed 0), with its soft-prompting
  model for the default LLM in steering/ (the default settings but one pass
  over the 33,504 training answers, 1,047 steps; about 5 minutes on 2 CPU
  cores);
* sample_data/studies/brexit-consensus/: the Polis brexit-consensus
  conversation fitted the same way, with its soft prompt (4 passes over the
  training answers, filled up with the cells nobody answered: 1,112 steps).

Usage: python scripts/build_sample_data.py [--only synthetic|study|steering]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from persona_engine.ingest import read_opinions
from persona_engine.study import fit_study
from persona_engine.synthetic import make_opinions, write_polis, write_wide

ROOT = Path(__file__).resolve().parent.parent / "sample_data"

SYNTHETIC_README = """# Synthetic opinions with planted cohorts

Made by `python scripts/build_sample_data.py` with
`persona_engine.synthetic.make_opinions(n_respondents=600, n_cohorts=4, random_state=0)`:
600 made-up respondents in 4 planted cohorts (metadata column `planted_cohort`),
10 five-point agreement questions and 20 agree / pass / disagree statements, with
Polis-like missingness. No real person is described. Public domain (CC0).

- `wide/answers.csv` + `wide/codebook.json`: the whole set as a wide table.
- `polis/`: the 20 statements as a Polis export (participants-votes.csv, comments.csv).
"""


def build_synthetic() -> None:
    folder = ROOT / "synthetic"
    shutil.rmtree(folder, ignore_errors=True)
    data = make_opinions(n_respondents=600, n_cohorts=4, random_state=0)
    write_wide(data, folder / "wide")
    write_polis(data, folder / "polis")
    (folder / "README.md").write_text(SYNTHETIC_README, encoding="utf-8")
    print(f"wrote {folder}")


STUDIES = {"gss_spending": ROOT / "gss_spending", "brexit-consensus": ROOT / "polis" / "brexit-consensus"}
"""The sample studies and the data each is fitted on."""

STEERING = {"gss_spending": dict(steps=None, epochs=1.0, max_examples=40000),
            "brexit-consensus": dict(steps=None, epochs=4.0, max_examples=40000)}
"""How each shipped soft prompt is trained: SteeringSettings' defaults (letters only, distilled from
the collaborative filter at 0.7) but for a number of passes instead of a number of steps."""


def build_steering() -> None:
    from persona_engine.llm import load_llm
    from persona_engine.steer.study_steering import train_steering
    from persona_engine.study import Study

    llm = load_llm()
    for name, options in STEERING.items():
        study = Study.load(ROOT / "studies" / name)
        _, result = train_steering(study, llm, **options)
        print(f"wrote {study.steering_path}: {result}")


def build_study() -> None:
    for name, source in STUDIES.items():
        data = read_opinions(source)
        study = fit_study(data, random_state=0)
        # Record the source relative to the repository, not this machine's paths.
        for entry in study.manifest["source"]["files"]:
            entry["name"] = str(Path(entry["name"]).resolve().relative_to(ROOT.parent))
        path = study.save(ROOT / "studies" / name)
        print(f"wrote {path}: {study.summary()['cohort_sizes']} respondents per cohort")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["synthetic", "study", "steering"])
    args = parser.parse_args()
    if args.only in (None, "synthetic"):
        build_synthetic()
    if args.only in (None, "study"):
        build_study()
    if args.only in (None, "steering"):
        build_steering()
