"""Polis conversation exports.

A Polis export folder holds ``participants-votes.csv`` (one row per
participant: ``participant``, ``group-id``, ``n-comments``, ``n-votes``,
``n-agree``, ``n-disagree``, then one column per statement id with 1 agree,
-1 disagree, 0 pass, blank unseen), ``comments.csv`` (``comment-id``,
``moderated`` with -1 for rejected statements, ``comment-body``, ...) and
optionally ``summary.csv`` (key/value rows such as ``topic``).

Every statement becomes an ordinal question with options
("disagree", "pass", "agree") and values (-1, 0, 1); statements a moderator
rejected are dropped even though Polis keeps their vote columns.
"""

from __future__ import annotations

import csv
import io
from pathlib import PurePath

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.ingest.files import InputFile
from persona_engine.ingest.table_files import csv_rows, decode_text, read_table
from persona_engine.ingest.options import ColumnValues, coded_answers
from persona_engine.ingest.codebook import metadata_column
from persona_engine.ingest.tables import respondent_ids
from persona_engine.opinion_data import OpinionData, Question, Source

VOTES_FILE = "participants-votes.csv"
COMMENTS_FILE = "comments.csv"
SUMMARY_FILE = "summary.csv"
OPTIONS = ("disagree", "pass", "agree")
OPTION_VALUES = (-1.0, 0.0, 1.0)
# Per-participant columns Polis writes before the vote columns, and what they
# are called in metadata.
PARTICIPANT_COLUMNS = {"group-id": "polis_group", "n-comments": "n_comments",
                       "n-votes": "n_votes", "n-agree": "n_agree", "n-disagree": "n_disagree"}


def read_polis(votes: InputFile, comments: InputFile, summary: InputFile | None = None,
               *, name: str | None = None, max_bytes: int | None = None) -> OpinionData:
    """Read one Polis conversation into :class:`OpinionData`.

    Respondents are participants; ``metadata`` holds ``polis_group`` (Polis's
    own opinion group, empty for participants Polis did not cluster) and the
    vote counts Polis computed (``n_votes`` etc., which count rejected
    statements too).
    """
    limit = {} if max_bytes is None else {"max_bytes": max_bytes}
    table = read_table(votes, **limit)
    if "participant" not in table.columns:
        raise DataError("a Polis votes file needs a 'participant' column", file=votes.display,
                        row=1, column="participant",
                        expected="the participants-votes.csv exported by Polis")
    statements = _statements(read_table(comments, **limit), comments.display)
    ids = respondent_ids(table, "participant", votes.display)

    # Vote columns are named by statement id; anything else a Polis version
    # adds per participant is kept as metadata.
    vote_columns = [c for c in table.columns if c in statements or c.isdigit()]
    extra_columns = [c for c in table.columns if c not in vote_columns and c != "participant"]
    questions, answers = [], []
    for column in vote_columns:
        statement = statements.get(column)
        if statement is not None and statement["rejected"]:
            continue
        coded = coded_answers(ColumnValues.of(table[column].tolist()), (-1, 0, 1), (),
                              file=votes.display, column_name=column, options=OPTIONS)
        text = statement["text"] if statement is not None else column
        questions.append(Question(column, text, OPTIONS, ordinal=True,
                                  option_values=OPTION_VALUES))
        answers.append(coded)
    if not questions:
        raise DataError("no statements are left after dropping rejected ones",
                        file=votes.display, expected="at least one accepted statement")

    metadata = pd.DataFrame(index=ids)
    for column in extra_columns:
        values = metadata_column(table[column].tolist())
        if column == "group-id" and values.dtype.kind == "f":
            values = values.astype("Int64")  # unclustered participants have no group
        metadata[PARTICIPANT_COLUMNS.get(column, column)] = values.array

    files = [votes.display, comments.display]
    topic = None
    if summary is not None:
        topic = _summary_topic(summary)
        files.append(summary.display)
    return OpinionData(
        respondent_ids=ids, questions=tuple(questions), answers=np.column_stack(answers),
        metadata=metadata, weights=None,
        source=Source(name=name or topic or _folder_name(votes), format="polis",
                      files=tuple(files)),
    )


def missing_comments(files) -> DataError | None:
    """The error for a Polis votes file that came without its comments file, else ``None``.

    ``files``: the names (paths) of the files read together. Without
    ``comments.csv`` the votes table would be read as an ordinary wide table,
    Polis's per-participant counts taken for questions and every statement
    left without its text.
    """
    names = [PurePath(str(f)) for f in files]
    votes = [n for n in names if n.name.casefold() == VOTES_FILE]
    if not votes or any(n.name.casefold() == COMMENTS_FILE for n in names):
        return None
    return DataError(f"this looks like a Polis export but {COMMENTS_FILE} is missing", file=str(votes[0]),
                     expected=f"{VOTES_FILE} and {COMMENTS_FILE} together, in one folder or zip, as Polis "
                              "exports them")


def _statements(comments: pd.DataFrame, where: str) -> dict[str, dict]:
    """``{comment id: {"text": ..., "rejected": bool}}`` from comments.csv."""
    for column in ("comment-id", "comment-body"):
        if column not in comments.columns:
            raise DataError(f"a Polis comments file needs a '{column}' column", file=where,
                            row=1, column=column, expected="the comments.csv exported by Polis")
    moderated = comments["moderated"] if "moderated" in comments.columns else \
        pd.Series([None] * len(comments))
    statements = {}
    for i, (cid, body, mod) in enumerate(zip(comments["comment-id"], comments["comment-body"],
                                             moderated)):
        key = str(cid).strip()
        if key.endswith(".0"):
            key = key[:-2]
        try:
            rejected = mod is not None and not pd.isna(mod) and float(mod) == -1
        except ValueError:
            raise DataError(f"moderation flag '{mod}' is not a number", file=where, row=i + 2,
                            column="moderated", expected="1 accepted, 0 unmoderated, -1 rejected"
                            ) from None
        text = "" if pd.isna(body) else str(body).strip()
        statements[key] = {"text": text or key, "rejected": rejected}
    return statements


def _summary_topic(summary: InputFile) -> str | None:
    # summary.csv is key,value rows without a header, some values spanning
    # lines; the csv module reads it as it is, with no header to guess.
    text = decode_text(summary.read_bytes(), summary.display)
    for row in csv_rows(csv.reader(io.StringIO(text)), summary.display):
        if len(row) >= 2 and row[0].strip().casefold() == "topic":
            return row[1].strip() or None
    return None


def _folder_name(votes: InputFile) -> str:
    return PurePath(votes.display).parent.name or "polis"
