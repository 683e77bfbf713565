"""UI state shared by the pages: the studies folder, the open study, the language model.

Heavy objects are cached once per process (``st.cache_resource``) and shared
by every session; what a session has chosen lives in ``st.session_state``:

* ``study_path``: the open study folder;
* ``studies_folder``: where fitted studies are saved (``--studies DIR`` after
  ``--``, else ``$PERSONA_ENGINE_STUDIES``, else the user data folder);
* ``llm_model``: the language model for chat and steering: ``None`` for the
  default SmolLM2, else a model folder or hub id (``$PERSONA_ENGINE_MODEL``
  sets it for every session; tests put a tiny model's folder here);
* ``per_study``: what belongs to one study alone, ``{study id: {key: value}}``
  (see :func:`study_state`): the persona handed to the Chat page
  (``chat_persona``, a persona spec, see
  :func:`persona_engine.personas.persona_from_spec`), the last one
  met there and the conversations. Opening another study sets it aside;
  reopening the study brings it back. Widgets whose value is about one
  study's respondents (the map's selection) take their key from
  :func:`study_key`, so their value never follows into another study.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
from platformdirs import user_data_dir

from persona_engine.errors import DataError
from persona_engine.study import MANIFEST, Study

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
DEFAULT_STUDY = SAMPLE_DATA / "studies" / "gss_spending"
STUDIES_ENV = "PERSONA_ENGINE_STUDIES"
MODEL_ENV = "PERSONA_ENGINE_MODEL"
log = logging.getLogger("persona_engine.app")


# ------------------------------------------------------------------ studies
def studies_folder() -> Path:
    """Where this session saves fitted studies (created on first use)."""
    folder = st.session_state.get("studies_folder") or os.environ.get(STUDIES_ENV) \
        or Path(user_data_dir("persona-engine")) / "studies"
    return Path(folder)


def saved_studies() -> dict[str, Path]:
    """The bundled sample study and every study in the studies folder: ``{label: folder}``."""
    found = {f"{DEFAULT_STUDY.name} (sample)": DEFAULT_STUDY}
    for path in sorted(DEFAULT_STUDY.parent.iterdir()):  # the other bundled samples
        if path != DEFAULT_STUDY and (path / MANIFEST).is_file():
            found[f"{path.name} (sample)"] = path
    folder = studies_folder()
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if (path / MANIFEST).is_file():
                found[path.name] = path
    current = Path(st.session_state.get("study_path", DEFAULT_STUDY))
    if current.resolve() not in {p.resolve() for p in found.values()}:
        found[current.name] = current  # opened from the command line
    return found


def is_bundled(path) -> bool:
    """Whether ``path`` lies in the shipped sample data (read-only for the app)."""
    return Path(path).resolve().is_relative_to(SAMPLE_DATA.resolve())


def new_study_path(name: str) -> Path:
    """A free folder in the studies folder for a study called ``name``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.").lower()[:60] or "study"
    folder = studies_folder()
    path, n = folder / slug, 2
    while path.exists():
        path, n = folder / f"{slug}-{n}", n + 1
    return path


def writable_copy(study: Study) -> Path:
    """The study's own folder, or for the bundled sample a copy in the studies folder."""
    if study.path is not None and not is_bundled(study.path):
        return Path(study.path)
    target = new_study_path(study.data.source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(study.path, target)
    return target


def _stamp(path: Path) -> float:
    """Changes whenever the study folder is rewritten (saving swaps in a new manifest)."""
    manifest = Path(path) / MANIFEST
    return manifest.stat().st_mtime_ns if manifest.is_file() else 0.0


def study_stamp(study: Study) -> float:
    """A cache key part that changes when the study's folder is rewritten."""
    return _stamp(Path(study.path)) if study.path is not None else 0.0


@st.cache_resource(show_spinner="Opening the study…", max_entries=8)
def _load_study(path: str, stamp: float) -> Study:
    return Study.load(path)


def load_study(path) -> Study:
    return _load_study(str(path), _stamp(Path(path)))


def open_study(path) -> None:
    """Make ``path`` the open study of this session.

    The old study's conversations and personas stay in its :func:`study_state`;
    the latent cursor, kept in plain widget keys, starts afresh.
    """
    st.session_state["study_path"] = str(path)
    for key in (HANDED, "cursor_x", "cursor_y", "cursor_clicked"):
        st.session_state.pop(key, None)


# ------------------------------------------------------------ per-study state
PER_STUDY = "per_study"
HANDED = "chat_persona"
"""A persona spec handed to the Chat page; a top-level value is taken into the open study's state."""


def study_id(path) -> str:
    """The key of one study's state: its folder and its manifest's stamp, so a refit study starts afresh."""
    return f"{Path(path).resolve()}@{_stamp(Path(path))}"


def study_state() -> dict:
    """This session's state of the open study alone (``{key: value}``), kept while other studies are open."""
    path = st.session_state.get("study_path", str(DEFAULT_STUDY))
    return st.session_state.setdefault(PER_STUDY, {}).setdefault(study_id(path), {})


def study_key(name: str) -> str:
    """A widget key ``name`` of the open study: the widget's value stays with that study."""
    return f"{name}@{study_id(st.session_state.get('study_path', str(DEFAULT_STUDY)))}"


def hand_to_chat(spec: dict) -> None:
    """Open the Chat page on the persona ``spec`` of the open study."""
    study_state()[HANDED] = spec
    st.switch_page("app_pages/chat.py")


def handed_persona() -> dict | None:
    """The persona last handed to the Chat page for the open study, if any."""
    here = study_state()
    if HANDED in st.session_state:  # set by a page (or a test) as a plain session key
        here[HANDED] = st.session_state.pop(HANDED)
    return here.get(HANDED)


def current_study(stop_on_error: bool = True) -> Study | None:
    """The open study, or an actionable message (never a traceback) if it cannot be read."""
    path = st.session_state.get("study_path", str(DEFAULT_STUDY))
    try:
        return load_study(path)
    except DataError as error:
        if stop_on_error:
            st.error(f"Cannot open the study: {error}")
            st.stop()
        return None


# --------------------------------------------------------------- the model
def llm_model() -> str | None:
    """The model chosen for this session: ``None`` is the default SmolLM2."""
    return st.session_state.get("llm_model") or os.environ.get(MODEL_ENV) or None


@dataclass
class ModelLoad:
    """One language model loading in a background thread, shared by every session.

    ``done`` is set when the load ended: then ``llm`` holds the
    :class:`~persona_engine.llm.LLM`, or ``error`` why it could not load.
    """

    model: str | None
    done: threading.Event = field(default_factory=threading.Event)
    llm: object = None
    error: BaseException | None = None

    def run(self) -> None:
        # A plain thread, without Streamlit's script context: it calls the package, never st.*.
        from persona_engine.llm import load_llm

        try:
            self.llm = load_llm(self.model)
        except Exception as error:  # DataError or not, raised again where the model is wanted
            if not isinstance(error, DataError):
                log.exception("loading the language model failed")
            self.error = error
        finally:
            self.done.set()


@st.cache_resource
def _model_loads() -> tuple[dict, threading.Lock]:
    """``({model: ModelLoad}, lock)``: one load per model for the whole server."""
    return {}, threading.Lock()


def start_loading_llm() -> ModelLoad:
    """Start loading this session's model in the background, unless it is loading or loaded.

    app.py calls it on every run, so the model is warm by the time the Chat page wants it.
    """
    model = llm_model()
    loads, lock = _model_loads()
    with lock:
        load = loads.get(model)
        if load is None or (load.done.is_set() and load.error is not None):  # a failed load is tried again
            _import_model_code()
            load = loads[model] = ModelLoad(model)
            threading.Thread(target=load.run, daemon=True, name="persona-llm-load").start()
    return load


def _import_model_code() -> None:
    """Import torch and transformers here, in the script's thread, before the loading thread starts.

    Two threads importing them at once can hand one a half-initialised
    module ("cannot import name 'DynamicCache' from 'transformers'"): the
    pages import them too. About 3 s, which the first page that needs them
    would spend anyway.
    """
    import transformers  # noqa: F401  (the whole package, then the names both threads use)
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache  # noqa: F401

    import persona_engine.llm  # noqa: F401
    import persona_engine.steer.injection  # noqa: F401


MODEL_STATUS = {"loading": "loading…", "ready": "ready"}
"""What the sidebar says of :func:`llm_status`; anything else is a failure."""


def llm_status() -> str:
    """``"ready"``, ``"loading"`` or ``"failed: why"`` for this session's model (starting its load)."""
    load = start_loading_llm()
    if not load.done.is_set():
        return "loading"
    return "ready" if load.error is None else f"failed: {load.error}"


def get_llm():
    """This session's :class:`~persona_engine.llm.LLM`, waiting for its background load if need be."""
    load = start_loading_llm()
    if not load.done.is_set():
        with st.spinner("Loading the language model (the first time takes ~20 s)…"):
            load.done.wait()
    if load.error is not None:
        raise load.error
    return load.llm


@st.cache_resource(show_spinner="Loading the study's soft-prompting model…", max_entries=8)
def _load_steering(study_path: str, stamp: float, model: str | None, _study: Study, _llm):
    from persona_engine.steer.steering_folder import load_steering

    return load_steering(_study, _llm)


def get_steering(study: Study, llm, *, allow_below_chance: bool = False):
    """``(soft prompt or None, why not)`` for the open study and this session's model.

    A model whose validation accuracy is at or below chance is refused
    (``None`` and a message saying so) unless ``allow_below_chance``; see
    :func:`get_steering_status` for its scores.
    """
    folder = study.steering_path
    if folder is None:
        return None, "This study has no soft-prompting model yet."
    status = get_steering_status(study)
    if status is not None and status.active is not None and status.active.at_or_below_chance \
            and not allow_below_chance:
        return None, (f"The study's soft-prompting model does no better than chance ({status.active.summary()}); "
                      "retrain it, or restore the previous model, on the Steer page.")
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    try:
        return _load_steering(str(study.path), stamp, llm_model(), study, llm), None
    except DataError as error:
        return None, str(error)


@st.cache_resource(show_spinner=False, max_entries=32)
def _steering_status(study_path: str, stamps: tuple, _study: Study):
    from persona_engine.steer.steering_folder import steering_status

    return steering_status(_study)


def get_steering_status(study: Study):
    """The study's :class:`~persona_engine.steer.steering_folder.SteeringStatus` (``None`` for an unsaved study).

    Its ``active`` score (``None`` without an installed model) has
    ``at_or_below_chance``, ``beats_majority`` and ``summary()``.
    """
    if study.path is None:
        return None
    from persona_engine.steer.steering_folder import CANDIDATE, CHECKPOINT, PREVIOUS

    folders = [Path(study.path) / name for name in ("steering", CANDIDATE, PREVIOUS, CHECKPOINT)]
    stamps = tuple((f / "config.json").stat().st_mtime_ns if (f / "config.json").is_file() else 0 for f in folders)
    return _steering_status(str(study.path), (study_stamp(study), *stamps), study)


@st.cache_resource(show_spinner=False)
def _load_sentence_encoder():
    from persona_engine.steer.stance import load_sentence_encoder

    return load_sentence_encoder()


@st.cache_resource(show_spinner="Reading the study's questions for grounding…", max_entries=8)
def _load_matcher(study_path: str, stamp: float, _study: Study):
    from persona_engine.steer.question_matching import QuestionMatcher

    return QuestionMatcher(_load_sentence_encoder()).fit(_study.data.questions)


def get_matcher(study: Study):
    """The study's :class:`~persona_engine.steer.question_matching.QuestionMatcher` (shared by every session)."""
    return _load_matcher(str(study.path), study_stamp(study), study)


# ----------------------------------------------------------- training jobs
@dataclass
class TrainingJob:
    """A soft-prompt training run in a background thread, shared by every session.

    ``step`` of ``total`` and ``info`` are the latest progress callback's
    (``progress("training", step, total, info)`` of
    :func:`~persona_engine.steer.train_soft_prompt`): ``total`` is 0 until
    the run's length is known, ``step`` 0 while it prepares. ``cancel``
    stops the run within a step.
    """

    thread: threading.Thread | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    step: int = 0
    total: int = 0
    info: dict = field(default_factory=dict)
    error: str | None = None
    result: object = None
    """The run's :class:`~persona_engine.steer.TrainingResult` once it ended."""

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@st.cache_resource
def training_jobs() -> dict[str, TrainingJob]:
    """``{study folder: job}``: one run per study at a time, visible to every session."""
    return {}
