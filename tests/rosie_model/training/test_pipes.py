"""Launched by Dagster through Pipes, the trainer streams its log lines and reports the materialization."""

import sys

import dagster as dg

from tests.rosie_model.conftest import train_args


def test_trainer_reports_through_dagster_pipes(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("ROSIE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    command = [sys.executable, "-m", "rosie_model", "train", *train_args(corpus, tmp_path / "model", steps=3)]

    @dg.asset
    def trained(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        return pipes.run(context=context, command=command).get_materialize_result()

    with dg.instance_for_test() as instance:
        result = dg.materialize([trained], instance=instance,
                                resources={"pipes": dg.PipesSubprocessClient()})
        assert result.success
        metadata = result.asset_materializations_for_node("trained")[0].metadata
        assert metadata["steps"].value == 3 and metadata["final_loss"].value > 0
        assert metadata["mlflow_run_id"].value and metadata["weights"].value.endswith("base.safetensors")
        logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
        assert any("step 3/3" in message for message in logs)
