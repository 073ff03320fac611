"""``python -m rosie_model COMMAND`` under Dagster Pipes, the one way assets start the model package.

The child gets the home, the home's MLflow store, ``ROSIE_EXIT_WITH`` (it exits, checkpointing, when this
step's process dies, even by ``kill -9``) and ``ROSIE_ERROR_FILE``: when it fails, the last lines of its
error (the exception, not "External execution process failed with code 1") become the step's failure
message, so the cause is on the run page rather than only in the stderr tab.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from dagster_project.training_report import mlflow_env
from rosie_pipeline.paths import RosieHome

# Dagster's own Pipes client reads a preview property of its own message reader on every launch; the notice
# says nothing about Rosie's code and printed once per trainer, evaluation and registration
warnings.filterwarnings("ignore", message=r"Function `PipesMessageReader\.expected_writer_count`",
                        category=dg.PreviewWarning)


def run_rosie_model(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient, home: RosieHome,
                    arguments: list[str], launcher: list[str] | None = None) -> dg.PipesClientCompletedInvocation:
    """Run ``rosie_model`` with ``arguments`` (``launcher`` in front, default ``python -m``); a failure raises
    ``dg.Failure`` carrying the child's own error."""
    command = [*(launcher or [sys.executable, "-m"]), "rosie_model", *arguments]
    context.log.info(f"launching: {' '.join(command)}")
    with tempfile.TemporaryDirectory(prefix="rosie-step-") as scratch:
        error_file = Path(scratch) / "error.txt"
        env = {"ROSIE_HOME": str(home.root), **mlflow_env(home), "ROSIE_EXIT_WITH": str(os.getpid()),
               "ROSIE_ERROR_FILE": str(error_file)}
        try:
            return pipes.run(context=context, command=command, env=env)
        except DagsterPipesExecutionError as exc:
            error = error_file.read_text(encoding="utf-8").strip() if error_file.exists() else ""
            if not error:
                raise
            last = error.splitlines()[-1]
            raise dg.Failure(description=f"rosie_model {arguments[0]} failed: {last}",
                             metadata={"error": dg.MetadataValue.md(f"```\n{error}\n```"),
                                       "command": " ".join(command)}) from exc
