"""How well the stance judge reads replies: accuracy on hand-labelled chat replies.

sample_data/chat_probes/stance_labels.json holds replies of the unsteered model, of the soft
prompt shipped before grounding and of grounded personas to the chat probes (GSS spending
items and the brexit-consensus Polis statements), each labelled by hand with the option it
takes, or null when it takes none. The "development" split is what the judge was written
on; the "held-out" split was labelled afterwards and never used to change it. Printed per
split: the accuracy of persona_engine.steer.judge (cue phrases) overall, by where the
replies came from, by suite and on the replies with and without a stance,
beside the sentence encoder's closest option (persona_engine.steer.stance, MiniLM; it
always names an option, so it is wrong on every reply without a stance).

    python bench/judge_accuracy.py
    python bench/judge_accuracy.py --show-errors
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from persona_engine.ingest import read_opinions
from persona_engine.steer.judge import judge_stance
from persona_engine.steer.stance import closest_options, load_sentence_encoder

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "sample_data/chat_probes/stance_labels.json"
DATA = {"gss": ROOT / "sample_data/gss_spending", "brexit": ROOT / "sample_data/polis/brexit-consensus"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args()

    rows = json.loads(Path(args.labels).read_text())["replies"]
    studies = {name: read_opinions(path) for name, path in DATA.items()}
    questions = [studies[r["suite"]].questions[studies[r["suite"]].question_index(r["question_id"])] for r in rows]
    encoder = load_sentence_encoder()
    nearest = closest_options(encoder, [r["reply"] for r in rows], questions)

    tally = defaultdict(lambda: [0, 0, 0])  # group -> [judge right, encoder right, count]
    errors = []
    for row, question, near in zip(rows, questions, nearest):
        stance = judge_stance(row["reply"], question)
        said = None if stance is None else question.options[stance]
        right, encoder_right = said == row["label"], question.options[near] == row["label"]
        split = row.get("split", "development")
        for group in (f"{split}: all", f"{split}: {row['source']}", f"{split}: suite {row['suite']}",
                      f"{split}: " + ("with a stance" if row["label"] is not None else "without a stance")):
            tally[group][0] += right
            tally[group][1] += encoder_right
            tally[group][2] += 1
        if not right:
            errors.append((row, said))
    print(f"{len(rows)} hand-labelled replies ({args.labels})")
    print(f"{'replies':<44} {'n':>4} {'judge':>6} {'MiniLM closest option':>22}")
    for group, (right, encoder_right, n) in sorted(tally.items(), key=lambda item: item[0].split(":")[0]):
        print(f"{group:<44} {n:>4} {right / n:>6.2f} {encoder_right / n:>22.2f}")
    if args.show_errors:
        for row, said in errors:
            print(f"\n[{row['suite']} {row['question_id']}] label {row['label']!r}, judge {said!r}: {row['reply']!r}")


if __name__ == "__main__":
    main()
