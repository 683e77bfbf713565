"""Do cohort personas answer like their cohorts? Steered vs unsteered vs the collaborative filter.

For each cohort persona (its centroid) and each study question, the steered LLM's answer
distribution is compared with the cohort members' real answers: how often its most likely
option is the cohort's majority answer, and the total-variation distance between the two
distributions. The unsteered LLM and the collaborative filter's prediction for the same
persona are the references. All answers count (training and held-out ones alike); the
held-out evaluation belongs to `persona-engine evaluate-steering` (issue 5).

Usage: python scripts/compare_cohort_personas.py [STUDY] [--strength S]
"""

from __future__ import annotations

import argparse

import numpy as np

from persona_engine.llm import load_llm
from persona_engine.opinion_data import MISSING
from persona_engine.personas import cohort_persona, predicted_answers
from persona_engine.steer import answer
from persona_engine.steer.steering_folder import load_steering
from persona_engine.study import Study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default="sample_data/studies/gss_spending")
    parser.add_argument("--strength", type=float, default=1.0)
    args = parser.parse_args()

    study = Study.load(args.study)
    llm = load_llm()
    soft_prompt = load_steering(study, llm)
    questions = study.data.questions
    unsteered = [answer(llm, q)[0] for q in questions]
    print(f"{study.data.source.name}: {len(questions)} questions, strength {args.strength}")
    print("cohort  size  | majority answer matched: steered  unsteered  filter | "
          "distance to real answers (TV): steered  unsteered  filter")
    for cohort in range(study.n_cohorts):
        persona = cohort_persona(study, cohort)
        filtered = predicted_answers(study, persona)["probabilities"]
        members = study.data.answers[study.labels == cohort]
        matched, distance = np.zeros(3), np.zeros(3)
        for j, question in enumerate(questions):
            column = members[:, j][members[:, j] != MISSING]
            real = np.bincount(column, minlength=question.n_options) / max(len(column), 1)
            steered = answer(llm, question, soft_prompt, persona.vector[None], strength=args.strength)[0]
            for m, predicted in enumerate((steered, unsteered[j], np.asarray(filtered.iloc[j]))):
                matched[m] += predicted.argmax() == real.argmax()
                distance[m] += 0.5 * np.abs(predicted - real).sum()
        matched /= len(questions)
        distance /= len(questions)
        print(f"{cohort:>6} {len(members):>5}  | {matched[0]:>33.2f} {matched[1]:>10.2f} {matched[2]:>7.2f} | "
              f"{distance[0]:>38.3f} {distance[1]:>10.3f} {distance[2]:>7.3f}")


if __name__ == "__main__":
    main()
