"""Is the Map page usable at 50,000 respondents?

Builds a 50,000-respondent study cheaply by tiling the bundled GSS study
(2,348 respondents) with jitter: answers, metadata, embeddings, cohorts and
map positions are repeated and the map positions and vectors nudged, so that
the page has as many distinct points to draw as a real study of that size.
Fitting such a study for real (embeddings + UMAP) takes minutes and is not
what this measures. The study is saved under a temporary folder, then the
Map page script is run with Streamlit's AppTest: a cold run (the libraries
imported, the study read and the map table built) and warm reruns (what a click or a colour change
costs), plus the size of the figure the browser receives.

The target: a warm rerun in at most 2 s.

    python bench/bench_map.py                 # 50,000 respondents
    python bench/bench_map.py --respondents 10000
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from persona_engine.opinion_data import OpinionData
from persona_engine.study import Study

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "studies" / "gss_spending"
TARGET_S = 2.0


def tiled_study(n_respondents: int, random_state: int = 0) -> Study:
    """The sample study repeated (with jitter) up to ``n_respondents`` respondents."""
    base = Study.load(SAMPLE)
    rng = np.random.default_rng(random_state)
    rows = np.resize(np.arange(base.data.n_respondents), n_respondents)
    copies = np.arange(n_respondents) // base.data.n_respondents
    ids = [f"{base.data.respondent_ids[r]}-{c}" for r, c in zip(rows, copies)]
    metadata = base.data.metadata.iloc[rows].reset_index(drop=True)
    data = OpinionData(ids, base.data.questions, base.data.answers[rows], metadata, None, base.data.source)
    embedder, cohorts, latent_map = (copy.deepcopy(part) for part in (base.embedder, base.cohorts, base.latent_map))
    vectors = base.embeddings[rows] + rng.normal(0, 0.05, (n_respondents, base.embeddings.shape[1]))
    embedder.respondent_factors_ = vectors.astype(np.float32)
    cohorts.labels_ = base.labels[rows]
    coords = base.latent_map.coords_[rows] + rng.normal(0, 0.08, (n_respondents, 2))
    latent_map.coords_ = coords.astype(np.float32)
    latent_map.embeddings_ = embedder.respondent_factors_
    stability = base.stability.assign(size=np.bincount(cohorts.labels_))
    return Study(data, embedder, cohorts, latent_map, stability, dict(base.manifest))


def time_page(study_path: Path, reruns: int = 3) -> dict:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    app.session_state["study_path"] = str(study_path)
    started = time.perf_counter()
    app.switch_page("app_pages/map.py").run()  # the first run: reads the study, builds the map table
    cold = time.perf_counter() - started
    if app.exception:
        raise RuntimeError(app.exception[0].message)
    warm = []
    for _ in range(reruns):
        started = time.perf_counter()
        app.run()
        warm.append(time.perf_counter() - started)
    started = time.perf_counter()
    app.selectbox(key="map_colour").select("answer: natfare").run()
    recolour = time.perf_counter() - started
    spec = app.get("plotly_chart")[0].proto.spec
    drawn = sum(len(trace.get("customdata") or []) for trace in json.loads(spec)["data"]
                if trace.get("name") != "latent cursor")
    return {"cold_s": cold, "warm_s": float(np.median(warm)), "recolour_s": recolour,
            "figure_mb": len(spec.encode()) / 1e6, "respondents_drawn": drawn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--respondents", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = tiled_study(args.respondents).save(Path(folder) / "tiled")
        print(f"built and saved a {args.respondents:,}-respondent study in {time.perf_counter() - started:.1f} s")
        figures = time_page(path)
    print(pd.Series(figures).round(2).to_string())
    verdict = "OK" if figures["warm_s"] <= TARGET_S else "SLOWER than"
    print(f"warm rerun {figures['warm_s']:.2f} s: {verdict} the {TARGET_S:.0f} s target")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
    if figures["respondents_drawn"] != args.respondents:
        raise SystemExit(f"the map drew {figures['respondents_drawn']:,} respondents, not {args.respondents:,}")


if __name__ == "__main__":
    main()
