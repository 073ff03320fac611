"""What the train and evaluate assets show about MLflow runs: links into the MLflow UI and loss curves."""

import base64
import io
import os
from pathlib import Path

from rosie_pipeline.paths import RosieHome

MLFLOW_UI = "http://127.0.0.1:5000"


def tracking_uri(home: RosieHome) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the home's sqlite store (DESIGN's default)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home.mlflow / 'mlflow.db'}"


def mlflow_env(home: RosieHome) -> dict[str, str]:
    home.mlflow.mkdir(parents=True, exist_ok=True)
    return {"MLFLOW_TRACKING_URI": tracking_uri(home)}


def mlflow_run_url(home: RosieHome, run_id: str) -> str:
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri(home)).get_run(run_id).info.experiment_id
    return f"{os.environ.get('ROSIE_MLFLOW_UI', MLFLOW_UI)}/#/experiments/{experiment}/runs/{run_id}"


def loss_curve_markdown(home: RosieHome, run_id: str, png_path: Path) -> str:
    """The run's loss (and validation loss) as a PNG saved beside the model, logged to the MLflow run
    (``plots/``, where the MLflow UI shows it) and inlined as markdown for the asset's metadata."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(home))
    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    for metric, style in (("loss", "-"), ("val_loss", "o--")):
        history = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
        if history:
            axis.plot([m.step for m in history], [m.value for m in history], style, label=metric)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.write_bytes(buffer.getvalue())
    client.log_artifact(run_id, str(png_path), artifact_path="plots")
    return f"![loss curve](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})\n\n`{png_path}`"
