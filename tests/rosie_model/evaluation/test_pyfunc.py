"""The registered chat model speaks MLflow 3's ResponsesAgent interface, in process and behind
``mlflow models serve``, and carries Rosie's extras both ways (event and memory user in; emotion,
memories and learned facts out)."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from rosie_model.core.config import DEFAULT_EMOTIONS
from tests.servers import free_port, wait_for


@pytest.fixture(scope="module")
def registered(chat_model_dir, tmp_path_factory):
    """The tiny chat model registered as ``rosie`` (champion) in a fresh sqlite MLflow; the tracking URI."""
    import mlflow

    from rosie_model.evaluation.registry import register

    root = tmp_path_factory.mktemp("mlflow")
    uri, before = f"sqlite:///{root / 'mlflow.db'}", mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:  # undone afterwards: later tests' subprocesses inherit the env
        patch.setenv("ROSIE_HOME", str(root / "home"))  # her memory store lives there
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri writes it into the environment too
        mlflow.set_tracking_uri(uri)
        assert register(chat_model_dir, {}, [], {"approach": "scratch"})["champion"]
        yield uri
        mlflow.set_tracking_uri(before)


def test_the_champion_answers_as_a_responses_agent_with_her_extras(registered):
    import mlflow

    champion = mlflow.pyfunc.load_model("models:/rosie@champion")
    answer = champion.predict({"input": [{"role": "user", "content": "My name is Ada."}],
                               "context": {"user_id": "ada"}, "max_output_tokens": 8})
    [message] = answer["output"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["content"][0]["text"]
    assert answer["custom_outputs"]["emotion"] in DEFAULT_EMOTIONS
    assert answer["custom_outputs"]["learned"] == ["The user's name is Ada."]  # the memory user came through
    poked = champion.predict({"input": [], "custom_inputs": {"event": "poke", "seed": 1}, "max_output_tokens": 8})
    assert poked["custom_outputs"]["emotion"] in DEFAULT_EMOTIONS and poked["output"][0]["content"][0]["text"]

    events = list(champion.predict_stream({"input": [{"role": "user", "content": "Hello!"}], "max_output_tokens": 8}))
    assert events[0]["type"] == "response.output_text.delta"
    assert events[0]["custom_outputs"]["emotion"] in DEFAULT_EMOTIONS  # her face before her words
    done = events[-1]
    assert done["type"] == "response.output_item.done"
    assert done["item"]["content"][0]["text"] == "".join(e["delta"] for e in events[:-1]).strip()


def test_mlflow_models_serve_answers_a_request(registered, tmp_path):
    port = free_port()
    # the scoring server is `uvicorn` from the environment's bin folder, as in an activated virtualenv
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/rosie@champion",
                                   "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", 180)
        body = {"input": [{"role": "user", "content": "Hi Rosie!"}], "max_output_tokens": 8,
                "custom_inputs": {"event": "pet"}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    assert answer["output"][0]["content"][0]["text"], (tmp_path / "serve.log").read_text()[-2000:]
    assert answer["custom_outputs"]["emotion"] in DEFAULT_EMOTIONS
