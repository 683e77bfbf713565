"""Sessions and interruptions: app sessions that chat at once stay apart; a killed run never harms a study.

* Four app sessions (AppTest, each in its own thread) chat at once through
  the one shared language model: each keeps its own conversation and
  persona, and no message reaches another session.
* Four threads write greedy steered replies on one shared model at once:
  each gets exactly the reply it gets alone.
* ``train-steering`` killed with SIGKILL while it installs its new model
  leaves the study's installed model loadable and intact (the save of a
  study itself is covered in ``test_study.py``).
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from app_pages.state import PER_STUDY, study_id
from persona_engine.llm import load_llm
from persona_engine.personas import cohort_persona
from persona_engine.steer import SoftPromptModel
from persona_engine.steer.grounding import grounded_chat
from persona_engine.steer.question_matching import QuestionMatcher
from persona_engine.steer.steering_folder import PREVIOUS, load_steering
from persona_engine.steer.study_steering import train_steering
from persona_engine.study import Study, fit_study
from test_steering_study import LEARNS, two_camps_data
from tiny_llm import save_tiny_llm

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "sample_data" / "studies" / "gss_spending"
QUESTIONS = ["What about welfare?", "Should we spend more on space?", "Are the police funded enough?",
             "Do schools need more money?"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(save_tiny_llm(tmp_path_factory.mktemp("tiny-llm")))


def test_four_app_sessions_chatting_at_once_each_keep_their_own_conversation(tiny_model, tmp_path, monkeypatch):
    # Each AppTest compiles the pages itself (a server compiles each page once), and CPython 3.11's
    # ast.parse is not thread-safe: parsed at once on four threads it can fail with "AST constructor
    # recursion depth mismatch" (python/cpython#106905). One parse at a time keeps that out of the test.
    parse, parsing = ast.parse, threading.Lock()

    def one_at_a_time(*args, **kwargs):
        with parsing:
            return parse(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", one_at_a_time)
    monkeypatch.setenv("PERSONA_ENGINE_STUDIES", str(tmp_path / "studies"))
    monkeypatch.setenv("PERSONA_ENGINE_MODEL", tiny_model)
    sessions = []
    for cohort in range(4):
        app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        app.session_state["study_path"] = str(STUDY)
        app.session_state["chat_persona"] = {"kind": "cohort", "cohort": cohort}
        app.run()
        app.switch_page("app_pages/chat.py").run()
        assert not app.exception, app.exception
        sessions.append(app)
    start, failures = threading.Barrier(4), []

    def talk(app, question):
        try:
            start.wait()
            app.chat_input[0].set_value(question).run()
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=talk, args=pair) for pair in zip(sessions, QUESTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    for cohort, (app, question) in enumerate(zip(sessions, QUESTIONS)):
        assert not app.exception, app.exception
        conversation = app.session_state[PER_STUDY][study_id(STUDY)]["conversation"]
        assert conversation["persona"] == {"kind": "cohort", "cohort": cohort}
        messages = conversation["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[0]["content"] == question and messages[1]["content"]
        shown = [m.markdown[0].value for m in app.chat_message if m.name == "user"]
        assert shown == [question]  # no other session's message on this page
    assert len({id(app.session_state[PER_STUDY]) for app in sessions}) == 4


def test_four_threads_on_one_shared_model_each_get_the_reply_they_get_alone(tiny_model):
    torch.manual_seed(0)
    llm = load_llm(tiny_model, device="cpu")
    study = Study.load(STUDY)
    matcher = QuestionMatcher().fit(study.data.questions)
    spm = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind="prefix", n_virtual_tokens=1,
                                  random_state=3)
    torch.nn.init.normal_(spm.mlp[2].bias, std=2.0)  # a strong soft prompt, so that personas differ
    personas = [cohort_persona(study, c).vector for c in range(4)]

    def reply(i):
        grounding, stream = grounded_chat(llm, [{"role": "user", "content": QUESTIONS[i]}], matcher, spm,
                                          personas[i], embedder=study.embedder, voice=1.0, temperature=0,
                                          max_new_tokens=24)
        return grounding.question_id, "".join(stream)

    alone = [reply(i) for i in range(4)]
    together, start = [None] * 4, threading.Barrier(4)

    def run(i):
        start.wait()
        together[i] = reply(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone
    assert len({text for _, text in alone}) > 1  # the four personas do not all say the same


def test_train_steering_killed_while_installing_leaves_the_installed_model(tiny_model, tmp_path):
    llm = load_llm(tiny_model, device="cpu")
    camps = fit_study(two_camps_data(), random_state=0)
    folder = replace(camps, path=None).save(tmp_path / "camps")
    train_steering(Study.load(folder), llm, **LEARNS)
    installed = (folder / "steering" / "model.safetensors").read_bytes()
    # A second run is killed (SIGKILL) in the middle of writing what it trained.
    script = textwrap.dedent(f"""
        import os, signal
        from persona_engine.study import folder as study_folder
        from persona_engine.llm import load_llm
        from persona_engine.steer import soft_prompt
        from persona_engine.steer.study_steering import train_steering
        from persona_engine.study import Study
        real_save = soft_prompt.save_file
        def save_then_die(tensors, filename, *args, **kwargs):
            real_save(tensors, filename, *args, **kwargs)
            if ".steering.partial-" in str(filename):  # the new model, written beside the installed one
                os.kill(os.getpid(), signal.SIGKILL)
        soft_prompt.save_file = save_then_die
        train_steering(Study.load({str(folder)!r}), load_llm({tiny_model!r}, device="cpu"), **{LEARNS!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]  # killed inside the install
    study = Study.load(folder)
    assert (folder / "steering" / "model.safetensors").read_bytes() == installed
    assert load_steering(study, llm) is not None
    assert (folder / PREVIOUS / "model.safetensors").read_bytes() == installed  # copied first, intact
