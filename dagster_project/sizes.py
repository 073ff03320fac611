"""Settings sized for the machine they run on (no dagster import: the CLI reads them before it needs Dagster).

They are the second of the settings layers (dagster_project/settings.py): over each asset's defaults, under the
home's settings.yaml and a run's own config.
"""

from pathlib import Path

#: The bootstrap phases sized for a CPU: LoRA on SmolLM2-135M's top layers in a few minutes (what `make demo`
#: trains); the likelihood diagnostics, minutes more on a CPU, are left to the scorecard. 70 steps show the
#: emotion head too few labels, so it is fitted on its own after phase 3 (about 1.5 minutes for 320 rows).
BOOTSTRAP_CPU: dict[str, dict[str, object]] = {
    "bootstrap_personality_model": {"steps": 40, "batch_size": 8, "lr": 0.001, "warmup_steps": 5},
    "bootstrap_rosie_model": {"steps": 30, "batch_size": 8, "lr": 0.001, "warmup_steps": 5, "replay_share": 0.5,
                              "emotion_head_fit_rows": 320},
    "bootstrap_evaluation": {"diagnostics": False},
}
#: ... and for a CUDA machine: longer phases on larger batches (not yet measured on a GPU).
BOOTSTRAP_GPU: dict[str, dict[str, object]] = {
    "bootstrap_personality_model": {"steps": 600, "batch_size": 16, "lr": 0.001, "warmup_steps": 30},
    "bootstrap_rosie_model": {"steps": 400, "batch_size": 16, "lr": 0.001, "warmup_steps": 30, "replay_share": 0.5,
                              "emotion_head_fit_rows": 2048},
}


def has_cuda_gpu() -> bool:
    """Whether the NVIDIA driver lists a GPU (without importing torch into the code location)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def machine_sizes() -> dict[str, dict[str, object]]:
    """The sizes for this machine: CUDA's when the driver lists a GPU, else the CPU's."""
    return BOOTSTRAP_GPU if has_cuda_gpu() else BOOTSTRAP_CPU
