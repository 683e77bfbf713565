"""The commands that speak as a persona of a study: ask (one question, its answer distribution) and chat."""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from persona_engine.errors import DataError

GROUNDING_SOURCES = ("soft prompt", "collaborative filter", "both")
"""``persona_engine.steer.grounding.SOURCES``, spelt out so that ``--help`` needs no torch (a test checks)."""


def add_parsers(sub, common: argparse.ArgumentParser, llm_args: argparse.ArgumentParser) -> None:
    """Register ask and chat (``common``, ``llm_args``: shared options)."""
    persona_args = argparse.ArgumentParser(add_help=False)
    who = persona_args.add_argument_group("persona (choose one)").add_mutually_exclusive_group(required=True)
    who.add_argument("--respondent", metavar="ID", help="a respondent's id")
    who.add_argument("--cohort", type=_cohort_or_all, metavar="N",
                     help="a cohort's number (its centroid); 'all' (ask only) for every cohort side by side")
    who.add_argument("--point", metavar="X,Y", help="a point of the map (write --point=-1,2 for a negative X)")
    persona_args.add_argument("--strength", type=float, default=1.0,
                              help="0 unsteered, 1 as trained (default), above 1 exaggerated")
    _add_ask_parser(sub, [common, llm_args, persona_args])
    _add_chat_parser(sub, [common, llm_args, persona_args])


def _add_ask_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    ask = sub.add_parser(
        "ask", parents=parents,
        help="ask a persona one question; print its answer distribution",
        description="Print the steered and unsteered LLM's probability of each option (and, for a study "
                    "question, the collaborative filter's prediction).")
    ask.add_argument("study", metavar="STUDY")
    ask.add_argument("question", metavar="QUESTION", help="a study question's id or text, or any question")
    ask.add_argument("--options", metavar="'A|B|C'", help="options of a question that is not in the study")
    ask.add_argument("--json", action="store_true", help="print JSON for scripts")
    ask.set_defaults(run=run_ask)


def _add_chat_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    talk = sub.add_parser(
        "chat", parents=parents, help="chat with a persona",
        description="Talk with the LLM steered toward a persona, one line per message; replies stream as "
                    "they are generated. Each reply is grounded in the study: it finds the study question "
                    "the message is about, opens with the persona's answer to it and gives reasons; what "
                    "grounded it goes to standard error. Reads piped input too. /quit or end of input leaves.")
    talk.add_argument("study", metavar="STUDY")
    talk.add_argument("--no-grounding", dest="grounding", action="store_false",
                      help="let the steered model answer on its own, without the study's questions")
    talk.add_argument("--source", choices=GROUNDING_SOURCES, default=None,
                      help="where a grounded reply's stance comes from: the soft prompt's answer, the "
                           "collaborative filter's, or their product (default: both where the study has a "
                           "soft prompt for this model, else the filter)")
    talk.add_argument("--voice", type=float, default=None,
                      help="strength of the soft prompt while a grounded reply gives its reasons (default 0: "
                           "the soft prompts are trained on answers only, and free text under them can fall "
                           "apart)")
    talk.add_argument("--system", default=None,
                      help="a system prompt for ungrounded replies (default: the model's own)")
    talk.add_argument("--max-new-tokens", type=int, default=200, help="longest reply in tokens (default 200)")
    talk.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 is greedy")
    talk.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    talk.set_defaults(run=run_chat)


def _cohort_or_all(value: str):
    if value.strip().lower() == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cohort number or 'all', not '{value}'") from None


def run_ask(args: argparse.Namespace) -> int:
    from persona_engine.personas import predicted_answers
    from persona_engine.steer import answer

    if args.cohort == "all":
        return _ask_every_cohort(args)
    study, persona = _study_and_persona(args)
    question, in_study = _question(study, args.question, args.options)
    llm, soft_prompt = _steered_llm(study, args)
    table = pd.DataFrame({
        "option": question.options,
        "steered": answer(llm, question, soft_prompt, persona.vector, strength=args.strength),
        "unsteered": answer(llm, question),
    })
    if in_study:  # what the collaborative filter expects, for comparison
        predicted = predicted_answers(study, persona)
        table["predicted"] = predicted.loc[predicted["question_id"] == question.id, "probabilities"].iloc[0]
    if args.json:
        print(json.dumps({"persona": persona.name, "strength": args.strength, "question": question.text,
                          "question_id": question.id if in_study else None,
                          "distributions": table.to_dict(orient="list")}, indent=2))
        return 0
    print(f"{persona.name}, strength {args.strength:g}: {question.text}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _ask_every_cohort(args: argparse.Namespace) -> int:
    """``ask --cohort all``: every cohort's estimate side by side, the study questions most like the new one,
    and the soft prompt's measured accuracy on questions it never saw."""
    from persona_engine.evaluation.report import json_ready
    from persona_engine.steer.new_question import cohort_estimates, similar_questions, unseen_accuracy
    from persona_engine.study import Study

    study = Study.load(args.study)
    question, in_study = _question(study, args.question, args.options)
    llm, soft_prompt = _steered_llm(study, args)
    table = cohort_estimates(llm, question, soft_prompt, study, strength=args.strength)
    similar = similar_questions(study, question) if not in_study else None
    measured = unseen_accuracy(study)
    if args.json:
        print(json.dumps(json_ready({
            "question": question.text, "options": list(question.options), "note": table.attrs["note"],
            "estimates": table.to_dict(orient="records"),
            "similar_questions": None if similar is None else similar.to_dict(orient="records"),
            "unseen_question_accuracy": measured}), indent=2, allow_nan=False))
        return 0
    weighting = "weighted" if table.attrs["weighted"] else "unweighted"
    print(f"{question.text}  [{table.attrs['note']}; cohort shares {weighting}; strength {args.strength:g}]")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    if similar is not None:
        print("\nThe study questions it most resembles:")
        print(similar.to_string(index=False))
    if measured is None:
        print("\nHow well this soft prompt answers questions it never saw is not measured yet: "
              f"persona-engine evaluate-steering {args.study} --split questions")
    else:
        accuracy, low, high = measured["spm"]
        line = f"\nOn questions held out of its training, the individual SPM was right {accuracy:.1%} of the time " \
               f"(interval {low:.1%} to {high:.1%})"
        if measured["question_only"]:
            line += f"; the unsteered model, calibrated, {measured['question_only'][0]:.1%}"
        print(line + ".")
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from persona_engine.steer import chat
    from persona_engine.steer.grounding import grounded_chat
    from persona_engine.steer.question_matching import QuestionMatcher

    study, persona = _study_and_persona(args)
    llm, soft_prompt = _steered_llm(study, args)
    matcher = QuestionMatcher().fit(study.data.questions) if args.grounding else None
    interactive = sys.stdin.isatty()
    print(f"Chatting with {persona.name} (strength {args.strength:g}) through {llm.name}. "
          "/quit or end of input leaves; Ctrl-C stops a reply.", file=sys.stderr)
    messages: list[dict] = []
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        options = dict(strength=args.strength, max_new_tokens=args.max_new_tokens,
                       temperature=args.temperature, random_state=args.seed)
        if matcher is not None:
            voice = {} if args.voice is None else {"voice": args.voice}
            grounding, stream = grounded_chat(llm, messages, matcher, soft_prompt, persona.vector,
                                              embedder=study.embedder, source=args.source, **voice, **options)
            print(f"[{_provenance(grounding)}]", file=sys.stderr, flush=True)
        else:
            stream = chat(llm, messages, soft_prompt, persona.vector, system=args.system, **options)
        pieces: list[str] = []
        if interactive:
            print(f"{persona.name}> ", end="", flush=True)
        try:
            for piece in stream:
                pieces.append(piece)
                print(piece, end="", flush=True)
        except KeyboardInterrupt:  # stops this reply, not the conversation
            stream.close()
            pieces.append(" ...")
        print(flush=True)
        messages.append({"role": "assistant", "content": "".join(pieces).strip()})
    return 0


def _provenance(grounding) -> str:
    """One line on what grounded a reply."""
    best = grounding.matches[0] if grounding.matches else None
    if not grounding.grounded:
        closest = f"; closest {best.question_id} at {best.similarity:.2f}" if best else ""
        return f"not grounded: nothing in the study is close{closest}"
    shares = ", ".join(f"{o} {p:.0%}" for o, p in zip(grounding.options, grounding.distribution))
    again = ", follow-up" if grounding.follow_up else ""
    return f"grounded in {best.question_id} (similarity {best.similarity:.2f}{again}); {grounding.source}: {shares}"


def _steered_llm(study, args: argparse.Namespace):
    """The study's soft prompt and the LLM it was trained for (unless ``--model`` names another)."""
    from persona_engine.llm import DEFAULT_MODEL, load_llm
    from persona_engine.steer.steering_folder import load_steering, steering_base_model

    model = args.model or steering_base_model(study)  # fails fast if the study has no soft prompt
    try:
        llm = load_llm(model, dtype=args.dtype)
    except DataError as error:
        if args.model or model == DEFAULT_MODEL:
            raise
        raise DataError(f"the soft prompt was trained for '{model}', which cannot be loaded by that name "
                        f"({error.message})", expected="--model with that model's folder or id") from None
    return llm, load_steering(study, llm)


def _study_and_persona(args: argparse.Namespace):
    from persona_engine.personas import cohort_persona, map_point_persona, parse_point, respondent_persona
    from persona_engine.study import Study

    study = Study.load(args.study)
    if args.respondent is not None:
        persona = respondent_persona(study, args.respondent)
    elif args.cohort == "all":
        raise DataError("--cohort all is for 'ask' only", expected="a cohort number")
    elif args.cohort is not None:
        persona = cohort_persona(study, args.cohort)
    else:
        persona = map_point_persona(study, parse_point(args.point))
        distance = persona.details["distance_to_data"]
        if distance > 2:
            print(f"Note: {persona.name} is {distance:.1f} kernel widths from the nearest respondent; "
                  "the persona there is an extrapolation.", file=sys.stderr)
    return study, persona


def _question(study, text: str, options: str | None):
    """The study question whose id or text is ``text``, or a new one with ``options`` ('a|b|c')."""
    from persona_engine.steer.new_question import new_question

    wanted = text.strip().casefold()
    if options is None:
        for question in study.data.questions:
            if wanted in (question.id.casefold(), question.text.strip().casefold()):
                return question, True
        raise DataError(f"'{text}' is not a question of this study",
                        expected="a question id or text from the study, or --options 'a|b|c'")
    return new_question(text, options), False
