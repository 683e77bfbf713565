"""UI pieces several pages share: the map's selection handler, the codebook table, bar charts, fit progress.

The functions above the charts are pure (no Streamlit calls) so that tests
can drive them directly: AppTest cannot click on a Plotly chart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from persona_engine.palettes import cohort_scale

CURSOR = "latent cursor"
"""Name of the map's clickable grid trace; its points carry this marker as customdata."""


# ------------------------------------------------------------------ the map
@dataclass(frozen=True)
class MapSelection:
    """What a selection event on the map picked.

    ``respondent_ids``: the selected respondents (box, lasso or a click on a
    respondent); ``point``: the ``(x, y)`` clicked for the latent cursor (a
    single clicked point, on the cursor grid or on a respondent), else None.
    """

    respondent_ids: tuple[str, ...] = ()
    point: tuple[float, float] | None = None


def map_selection(selection) -> MapSelection:
    """Turn ``st.plotly_chart(..., on_select="rerun")``'s ``selection`` into a :class:`MapSelection`.

    Respondent points carry their id first in ``customdata``; the cursor grid
    carries :data:`CURSOR`. Other traces (cohort markers) are ignored.
    """
    if not selection:
        return MapSelection()
    points = list(selection.get("points") or [])
    ids = []
    for point in points:
        data = point.get("customdata")
        first = data[0] if isinstance(data, (list, tuple)) and data else data
        if first is not None and first != CURSOR:
            ids.append(str(first))
    dragged = bool(selection.get("box") or selection.get("lasso"))
    clicked = None
    if len(points) == 1 and not dragged and "x" in points[0] and "y" in points[0]:
        clicked = (float(points[0]["x"]), float(points[0]["y"]))
    return MapSelection(tuple(dict.fromkeys(ids)), clicked)


def cursor_grid(coords: np.ndarray, n: int = 45, margin: float = 0.05) -> np.ndarray:
    """``(n * n, 2)`` points spanning the map ``coords (n_respondents, 2)``, a clickable layer."""
    low, high = coords.min(axis=0), coords.max(axis=0)
    pad = (high - low) * margin
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], n)
    ys = np.linspace(low[1] - pad[1], high[1] + pad[1], n)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


# ------------------------------------------------------------------ codebook
def codebook_rows(data, book) -> pd.DataFrame:
    """One editable row per column: its role, wording, options in order and codes as in the file."""
    rows = []
    if book is not None and book.id_column:
        rows.append((book.id_column, "id", None, None, None, None))
    if book is not None and book.weight_column:
        rows.append((book.weight_column, "weight", None, None, None, None))
    for question in data.questions:
        spec = book.questions.get(question.id) if book is not None else None
        codes = "|".join(map(str, spec.codes)) if spec is not None and spec.codes is not None else None
        rows.append((question.id, "question", question.text, "|".join(question.options), codes,
                     question.ordinal))
    for column in data.metadata.columns:
        text = book.metadata[column].text if book is not None and column in book.metadata else None
        rows.append((column, "metadata", text, None, None, None))
    for column in (book.ignore if book is not None else ()):
        rows.append((column, "ignore", None, None, None, None))
    return pd.DataFrame(rows, columns=["column", "role", "text", "options", "codes", "ordinal"])


def codebook_dict(rows: pd.DataFrame, book) -> dict:
    """The edited rows as a codebook dict in the JSON form ``read_opinions`` accepts."""
    def split(cell):
        return [p.strip() for p in str(cell).split("|") if p.strip()] if isinstance(cell, str) else None

    result: dict = {"questions": {}, "metadata": {}, "ignore": []}
    if book is not None:
        result["missing"] = list(book.missing)
        if book.name:
            result["name"] = book.name
    for row in rows.to_dict("records"):
        column, role = str(row["column"] or "").strip(), row["role"]
        if not column:
            continue
        if role in ("id", "weight"):
            result[role] = column
        elif role == "ignore":
            result["ignore"].append(column)
        elif role == "metadata":
            entry = {"text": row["text"]} if isinstance(row["text"], str) and row["text"] else {}
            if book is not None and column in book.metadata and book.metadata[column].labels:
                entry["labels"] = dict(book.metadata[column].labels)
            result["metadata"][column] = entry
        else:
            entry = {}
            if isinstance(row["text"], str) and row["text"].strip():
                entry["text"] = row["text"].strip()
            if split(row["options"]):
                entry["options"] = split(row["options"])
            if split(row["codes"]):
                entry["codes"] = split(row["codes"])
            if isinstance(row["ordinal"], (bool, np.bool_)):
                entry["ordinal"] = bool(row["ordinal"])
            spec = book.questions.get(column) if book is not None else None
            if spec is not None and spec.missing:
                entry["missing"] = list(spec.missing)
            result["questions"][column] = entry
    return result


# ------------------------------------------------------------------ charts
def share_bars(rows: pd.DataFrame, group: str, share: str = "share_in", overall: str = "share_all",
               other: str = "everyone", height: int | None = None, colour: str = "#4C78A8",
               other_colour: str | None = None) -> go.Figure:
    """Horizontal bars: each row's answer share in ``group`` against ``other`` (everyone).

    ``rows`` needs ``question``, ``answer`` and the two share columns (0-1);
    an optional ``full_question`` is shown on hover where ``question`` is shortened.
    Pass a cohort's :func:`~persona_engine.palettes.cohort_colour` as
    ``colour`` (or ``other_colour``) so that it has its colour on the map.
    """
    labels = [f"{q}: <b>{a}</b>" for q, a in zip(rows["question"], rows["answer"])]
    full = rows["full_question"] if "full_question" in rows else rows["question"]
    hover = [[f"{q}: {a}"] for q, a in zip(full, rows["answer"])]
    figure = go.Figure([
        go.Bar(y=labels, x=rows[share], name=group, orientation="h", marker_color=colour, customdata=hover,
               hovertemplate="%{customdata[0]}<br>%{x:.0%}<extra>" + group + "</extra>"),
        go.Bar(y=labels, x=rows[overall], name=other, orientation="h", customdata=hover,
               marker_color=other_colour or ("#BAB0AC" if other == "everyone" else "#F58518"),
               hovertemplate="%{customdata[0]}<br>%{x:.0%}<extra>" + other + "</extra>"),
    ])
    figure.update_layout(barmode="group", height=height or 90 + 46 * len(rows),
                         margin=dict(l=0, r=10, t=10, b=10), xaxis=dict(tickformat=".0%", range=[0, 1]),
                         yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.15))
    return figure


def cohorts_on_map(coords: np.ndarray, labels: np.ndarray, n_cohorts: int, height: int = 300) -> go.Figure:
    """Respondents ``coords (n_respondents, 2)`` coloured by cohort in the study's one cohort palette,
    with a legend, as on the Map page (for small maps beside other content)."""
    scale = cohort_scale(n_cohorts)
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "cohort": np.asarray(labels).astype(str)})
    figure = px.scatter(frame, x="x", y="y", color="cohort", opacity=0.3, render_mode="webgl", height=height,
                        category_orders={"cohort": scale.order}, color_discrete_map=scale.colours)
    figure.update_layout(margin=dict(l=0, r=0, t=0, b=0), xaxis_title=None, yaxis_title=None,
                         legend=dict(title="cohort", orientation="h", y=-0.08, itemsizing="constant"))
    return figure


def predicted_table(predicted: pd.DataFrame) -> pd.DataFrame:
    """:func:`~persona_engine.personas.predicted_answers` as a small table to read beside a chat."""
    return pd.DataFrame({"question": predicted["question_id"], "answer": predicted["answer"],
                         "probability": predicted["probability"].round(2)})


# ------------------------------------------------------------------ fitting
STAGES = {"embedding": (0.0, 0.15, "Embedding respondents (collaborative filtering)"),
          "cohorts": (0.15, 0.6, "Finding cohorts and checking their stability"),
          "map": (0.6, 1.0, "Drawing the map (UMAP)")}
"""Each stage's share of a fit's time, as measured on the GSS sample (3 s, 22 s and 17 s of 44 s)."""


def fit_time(elapsed: float, done: float) -> str:
    """Time so far and, once a stage has ended, about how long is left (from :data:`STAGES`' shares)."""
    said = f"{elapsed:.0f} s so far"
    if done < STAGES["embedding"][1] or elapsed < 1:
        return said
    return f"{said}, about {max(elapsed / done - elapsed, 1):.0f} s left"
