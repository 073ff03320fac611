"""The whole graph, training and registry included, materialized with tiny settings into a temp home."""

import json
import os
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from dagster_project.headless import prepare_instance, run_selection
from dagster_project.settings import remember_settings
from rosie_pipeline.paths import RosieHome
from tests.dagster_project.conftest import land_sample
from tests.pretrained import save_small_llama
from tests.servers import Browser, chromium_or_skip, dagster_dev

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "personality_dialogues": {"target": 300, "chitchat_limit": 40},
    "emotion_dialogues": {"chitchat_limit": 80},
    "memory_dialogues": {"count": 120, "distractor_conversations": 30},
    "rosie_tokenizer": {"vocab_size": 600},
    "pretrain_shards": {"seq_len": 32, "val_permille": 300},
    "dialogue_shards": {"seq_len": 64},
    "bootstrap_dialogue_shards": {"seq_len": 64},
    "base_model": {"steps": 4, "batch_size": 4, "max_seq_len": 64},
    "personality_model": {"steps": 6, "batch_size": 4, "max_seq_len": 64},
    "rosie_model": {"steps": 4, "batch_size": 4, "max_seq_len": 64},
    "bootstrap_personality_model": {"steps": 6, "batch_size": 4, "max_seq_len": 64, "lora_r": 4},
    "bootstrap_rosie_model": {"steps": 4, "batch_size": 4, "max_seq_len": 64, "lora_r": 4},
    "model_evaluation": {"val_permille": 300, "max_rows": 64},
    "bootstrap_evaluation": {"val_permille": 300, "max_rows": 64, "diagnostics": True},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The whole graph, both approaches, once for this module, built with tiny settings that the home
    remembers (its settings.yaml, as `rosie demo` leaves it): (definitions, run report, home, instance)."""
    saved = {k: os.environ.pop(k, None) for k in ("DAGSTER_HOME", "ROSIE_HOME", "MLFLOW_TRACKING_URI")}
    home = RosieHome.from_env(tmp_path_factory.mktemp("graph") / "rosie")
    land_sample(home)
    llama = save_small_llama(tmp_path_factory.mktemp("pretrained") / "llama")  # what the bootstrap assets adapt
    remember_settings(home, {**TINY, "bootstrap_tokenizer": {"pretrained": str(llama)}})
    defs = build_definitions(str(home.root))
    instance = prepare_instance(home)
    try:
        yield defs, run_selection(defs, instance, home, None), home, instance
    finally:
        instance.dispose()
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def test_whole_graph_trains_evaluates_and_registers(trained):
    _, report, home, _ = trained
    assert report.outcomes and not report.failed, report.failed
    model = home.models / "rosie_model"
    assert {p.name for p in (model / "weights").iterdir()} == {"base.safetensors", "personality.safetensors",
                                                              "final.safetensors"}
    results = json.loads((home.lake / "model_evaluation" / "results.json").read_text())
    assert {"web", "dialogue"} <= set(results["perplexity"]) and results["conversation_bits_per_byte"] > 0
    # the scorecard talked to her through Rosie.reply: every measure, every prompt, sampling chosen and recorded
    assert {r["measure"] for r in results["scorecard_rows"]} == {"persona", "knowledge", "memory", "emotion_fit",
                                                                 "events"}
    assert (model / "sampling.json").exists() and results["sampling_tuning"]
    # a model trained for a handful of steps is not good enough: the floors say so; nothing leaked into training
    failed = [check for outcome in report.outcomes for check in outcome.failed_checks]
    assert "model_evaluation:persona" in failed and "model_evaluation:no_leakage" not in failed

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home.mlflow / 'mlflow.db'}")
    champion = mlflow.pyfunc.load_model("models:/rosie@champion")
    answer = champion.predict({"input": [], "custom_inputs": {"event": "drag"}, "max_output_tokens": 8})
    from rosie_model.core.config import DEFAULT_EMOTIONS

    assert answer["output"][0]["content"][0]["text"] and answer["custom_outputs"]["emotion"] in DEFAULT_EMOTIONS
    registered = json.loads((home.lake / "registered_model" / "registration.json").read_text())
    version = mlflow.MlflowClient().get_model_version("rosie", registered["version"])
    assert version.tags["approach"] == "scratch" and "data.dialogue-personality-train" in version.tags
    assert version.tags["git_commit"]
    run = mlflow.search_runs(experiment_names=["rosie-personality"], output_format="list")[0]
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")] == \
        ["plots/loss-personality.png"]  # the loss curve, where the MLflow UI shows it
    # lineage in MLflow's model pages: the final weights' LoggedModel carries the evaluation's metrics and is
    # the input of the evaluation and of the run that registered the version
    evaluation = mlflow.get_run(results["mlflow_run_id"])
    [trained] = [m.model_id for m in evaluation.inputs.model_inputs]
    phase_model = mlflow.get_logged_model(trained)
    assert phase_model.name == "rosie-emotion_memory" and results["weights"].endswith("final.safetensors")
    assert {"final_loss", "scorecard_persona"} <= {m.key for m in phase_model.metrics}
    registering = mlflow.get_run(version.tags["mlflow_run_id"])
    assert [m.model_id for m in registering.inputs.model_inputs] == [trained]
    assert "scorecard_persona" in {m.key for m in mlflow.get_logged_model(version.source.removeprefix("models:/")).metrics}


def _graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=60).read())["data"]


AUTOMATION_TICKS = """{ sensorOrError(sensorSelector: {repositoryLocationName: "dagster_project.definitions:defs",
  repositoryName: "__repository__", sensorName: "rosie_automation"}) { __typename
  ... on Sensor { sensorState { ticks(limit: 5) { status requestedAssetMaterializationCount runIds } } } } }"""


def latest_materialization(browser: Browser, url: str) -> str | None:
    """What an asset's page says under "Latest materialization", once it has loaded."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = browser.text_after(url, ["Latest materialization"], 60).splitlines()
        if "Latest materialization" in lines:
            shown = lines[lines.index("Latest materialization") + 1].strip()
            if shown and not shown.startswith("Loading"):
                return shown
        time.sleep(1)
    return None


def test_the_ui_opened_after_the_graph_rebuilds_nothing_and_starts_from_the_homes_settings(trained, tmp_path):
    """`make ui` on a home the whole graph was built in, as `rosie demo` leaves it: the daemon's automation tick
    requests nothing, no run starts, the assets' pages show them materialized, and the Launchpad's defaults
    are the settings the home was built with."""
    chromium = chromium_or_skip()
    _, _, home, instance = trained
    runs_before = {record.dagster_run.run_id for record in instance.get_run_records()}
    env = {**os.environ, "DAGSTER_HOME": str(home.dagster), "ROSIE_HOME": str(home.root)}
    with dagster_dev(env, ROOT) as base:
        deadline, ticks = time.monotonic() + 240, []
        while time.monotonic() < deadline and not any(t["status"] != "STARTED" for t in ticks):
            time.sleep(2)  # until the daemon has evaluated the automation sensor once
            ticks = _graphql(base, AUTOMATION_TICKS)["sensorOrError"].get("sensorState", {}).get("ticks", [])
        finished = [t for t in ticks if t["status"] != "STARTED"]
        assert finished, "the automation sensor never ticked"
        assert all(t["requestedAssetMaterializationCount"] == 0 and not t["runIds"] for t in finished), finished
        assert {record.dagster_run.run_id for record in instance.get_run_records()} == runs_before

        tokenizer = _graphql(base, '{ assetNodeOrError(assetKey: {path: ["rosie_tokenizer"]}) '
                                   '{ ... on AssetNode { configField { defaultValueAsJson } } } }')
        defaults = json.loads(tokenizer["assetNodeOrError"]["configField"]["defaultValueAsJson"])
        assert defaults["vocab_size"] == TINY["rosie_tokenizer"]["vocab_size"]  # the home's, not the asset's 32000

        browser = Browser(chromium, tmp_path / "profile")
        try:
            for asset in ("rosie_tokenizer", "registered_model", "bootstrap_registered_model", "scorecard_comparison"):
                assert latest_materialization(browser, f"{base}/assets/{asset}") not in ("Never materialized", None), asset
        finally:
            browser.close()


def test_the_chat_api_loads_the_champion_and_names_unknown_aliases(trained, monkeypatch):
    from rosie_model.serving.chat import ModelNotFound, Rosie

    _, _, home, _ = trained
    monkeypatch.setenv("ROSIE_HOME", str(home.root))
    rosie = Rosie.load("models:/rosie@champion")
    assert rosie.loaded.folder.parent.name == "artifacts" and rosie.reply([], event="pet").emotion
    scratch = json.loads((home.lake / "registered_model" / "registration.json").read_text())["version"]
    assert Rosie.load(f"models:/rosie/{scratch}").loaded.model.config.preset == "tiny"  # a version by number
    with pytest.raises(ModelNotFound, match=r"no alias @staging; its aliases: @champion \(version \d+\)"):
        Rosie.load("models:/rosie@staging")
    with pytest.raises(ModelNotFound, match="no registered model 'rosy'"):
        Rosie.load("models:/rosy@champion")


def test_the_champion_exports_with_its_scorecard_and_data_on_the_card(trained, monkeypatch, tmp_path):
    from huggingface_hub import ModelCard

    from rosie_model.export.hf import export_hf

    _, _, home, _ = trained
    monkeypatch.setenv("ROSIE_HOME", str(home.root))
    card = ModelCard.load(export_hf("models:/rosie@champion", tmp_path / "hf") / "README.md")
    scores = {m["type"]: m["value"] for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}
    assert set(scores) == {"persona", "knowledge", "memory", "emotion_fit", "events", "fluency"}
    assert "dialogue-personality-train" in card.data.rosie_datasets and card.data.rosie_git_commit
    assert card.data.rosie_source.startswith("models:/rosie@champion (version ")
    assert "| persona |" in card.text  # the scorecard a person reads


def test_retraining_resumes_and_the_champion_moves_only_when_beaten(trained):
    defs, _, home, instance = trained
    before = json.loads((home.lake / "registered_model" / "registration.json").read_text())
    # no run config: the settings the home was built with
    rerun = dg.materialize(defs.assets, selection=["rosie_model", "model_evaluation", "registered_model"],
                           instance=instance, resources=defs.resources)
    assert rerun.success
    logs = [e.message for e in instance.all_logs(rerun.run_id) if e.message]
    # the trainer decides (its inputs are unchanged) and says so through Pipes
    assert any("phase emotion_memory:" in m and "resuming at step 4" in m for m in logs), logs
    registration = rerun.asset_materializations_for_node("registered_model")[0].metadata
    assert registration["model_uri"].value == f"models:/rosie/{int(before['version']) + 1}"
    # the same weights evaluate the same: the new version beats neither itself nor a champion that beat it
    assert registration["champion"].value == "no, unchanged"
    assert "ties the champion" in registration["reason"].value or "below the champion" in registration["reason"].value


def test_a_failing_trainer_fails_the_asset(trained):
    defs, _, _, instance = trained
    result = dg.materialize(defs.assets, selection=["base_model"], instance=instance, resources=defs.resources,
                            run_config={"ops": {"base_model": {"config": {"preset": "no-such-preset", "fresh": True}}}},
                            raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "rosie_model train failed" in message and "no-such-preset" in message  # the cause, on the run page
    assert "External execution process failed" not in message
    # a trainer that crashes with a traceback (max_seq_len below the shards' rows) names its exception too
    result = dg.materialize(defs.assets, selection=["base_model"], instance=instance, resources=defs.resources,
                            run_config={"ops": {"base_model": {"config": {"max_seq_len": 8, "fresh": True}}}},
                            raise_on_error=False)
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "max_seq_len" in failure.event_specific_data.error.message


def test_champion_rule():
    from rosie_model.evaluation.registry import SCORECARD, beats

    champion = {f"eval.{k}": "0.5" for k in SCORECARD} | {"eval.conversation_bits_per_byte": "2.0"}
    better = {**champion, "eval.scorecard_memory": "0.9"}
    assert beats(better, champion)[0] and beats(better, {})[0]  # a version without a scorecard yields
    assert not beats(champion, better)[0]
    tie = {**champion, "eval.scorecard_events": "0.51", "eval.conversation_bits_per_byte": "1.9"}
    promoted, reason = beats(tie, champion)  # within the margin the held-out conversations decide
    assert promoted and "bits per byte" in reason
    assert not beats({**tie, "eval.conversation_bits_per_byte": "2.1"}, champion)[0]
    assert not beats({"eval.memory_recall": "1.0"}, champion)[0]  # likelihood diagnostics alone never win


def test_the_bootstrap_approach_has_its_own_assets_evaluation_and_registered_version(trained, tmp_path, monkeypatch):
    """The bootstrap assets, on a small pretrained Llama saved here, next to the scratch ones: neither touches the
    other's model, results or registration."""
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    defs, report, home, _ = trained
    assert {"bootstrap_rosie_model", "bootstrap_evaluation", "bootstrap_registered_model"} <= {
        name for outcome in report.outcomes if outcome.success for name in outcome.assets}
    # the job the UI launches: the bootstrap assets alone, from its tokenizer to its registered version
    job = defs.resolve_job_def("bootstrap_training")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
        "bootstrap_tokenizer", "bootstrap_dialogue_shards", "bootstrap_personality_model", "bootstrap_rosie_model",
        "bootstrap_evaluation", "bootstrap_registered_model"}

    # the same dialogues in the pretrained model's ids, facts rendered into the context
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(home.lake / "bootstrap_tokenizer" / "tokenizer.json"))
    shards = home.lake / "bootstrap_dialogue_shards"
    manifest = json.loads((shards / "emotion_memory" / "train" / "manifest.json").read_text())
    assert manifest["tokenizer_sha256"] != json.loads(
        (home.lake / "dialogue_shards" / "emotion_memory" / "train" / "manifest.json").read_text())["tokenizer_sha256"]
    import pyarrow.parquet as pq

    rows = pq.read_table(shards / "emotion_memory" / "train" / manifest["shards"][0]["file"]).to_pylist()
    memory_id = tokenizer.token_to_id("<|memory|>")
    assert any(memory_id in row["tokens"] for row in rows if row["memory"])

    model = home.models / "rosie_bootstrap"
    assert (model / "adapters" / "adapter_config.json").exists() and (model / "merged" / "config.json").exists()
    assert not any(".base_layer." in k for k in load_file(str(model / "weights" / "final.safetensors")))
    assert not (model / "weights" / "base.safetensors").exists()  # the pretrained model is its base

    results = json.loads((home.lake / "bootstrap_evaluation" / "results.json").read_text())
    scratch = json.loads((home.lake / "model_evaluation" / "results.json").read_text())
    assert results["approach"] == "bootstrap" and scratch["approach"] == "scratch"
    assert results["memory_items"] == scratch["memory_items"]  # the same held-out sets
    assert results["dialogue_bits_per_byte"] > 0 and scratch["dialogue_bits_per_byte"] > 0
    with dg.DagsterInstance.from_config(str(home.dagster)) as instance:
        compared = instance.get_latest_materialization_event(dg.AssetKey("scorecard_comparison"))
    table = compared.asset_materialization.metadata["scorecards"].value
    assert "| memory |" in table and "| scratch | bootstrap |" in table
    assert (home.lake / "scorecard_comparison" / "comparison.md").read_text().strip() == table

    registered = json.loads((home.lake / "bootstrap_registered_model" / "registration.json").read_text())
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home.mlflow / 'mlflow.db'}")
    version = mlflow.MlflowClient().get_model_version("rosie", registered["version"])
    assert version.tags["approach"] == "bootstrap" and version.tags["bootstrap.pretrained"] == "llama"
    assert "data.dialogue-personality-train" in version.tags
    from rosie_model.serving.chat import Rosie

    monkeypatch.setenv("ROSIE_HOME", str(home.root))
    reply = Rosie.load(registered["model_uri"], memory_path=tmp_path / "memory.db").reply(
        [{"role": "user", "content": "Hello!"}])
    assert reply.emotion and isinstance(reply.text, str)

