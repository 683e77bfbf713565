"""Rebuild what sample_data/ ships beside the real data sets.

* sample_data/synthetic/: planted-cohort opinions from persona_engine.synthetic,
  as a wide table with its codebook, and the same statements as a Polis export;
* sample_data/studies/gss_spending/: the study `make app` opens (GSS 2018
  spending, fitted with the defaults and seed 0), with its soft-prompting
  model for the default LLM in steering/ (prefix tuning, 4 virtual tokens
  before the reply, 16,000 of the study's training answers for one epoch,
  half of them taught in words; about 30-50 minutes on 2 CPU cores).

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


STEERING = dict(max_examples=16000, epochs=1.0, words_share=0.5, random_state=0)
"""How the shipped soft prompt is trained (train_steering's defaults otherwise: 4 virtual tokens
before the reply, batch 32, lr 3e-3, distilled from the collaborative filter at 0.7)."""


def build_steering(study_folder: Path = ROOT / "studies" / "gss_spending") -> None:
    from persona_engine.llm import load_llm
    from persona_engine.steer.study_steering import train_steering
    from persona_engine.study import Study

    study = Study.load(study_folder)
    _, result = train_steering(study, load_llm(), **STEERING)
    print(f"wrote {study.steering_path}: {result}")


def build_study() -> None:
    data = read_opinions(ROOT / "gss_spending")
    study = fit_study(data, random_state=0)
    # Record the source relative to the repository, not this machine's paths.
    for entry in study.manifest["source"]["files"]:
        entry["name"] = str(Path(entry["name"]).resolve().relative_to(ROOT.parent))
    path = study.save(ROOT / "studies" / "gss_spending")
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
