"""The training engine run as users run it: ``python -m rosie_model train`` and ``torchrun``."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rosie_model.training.data import DataError, Position, ShardDataset
from tests.rosie_model.conftest import SEQ_LEN, train_args, train_env, write_split

PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def _train(corpus, out_dir, phase="base", launcher=(PYTHON, "-m"), **settings):
    done = subprocess.run([*launcher, "rosie_model", "train", *train_args(corpus, out_dir, phase, **settings)],
                          env=train_env(out_dir.parent / "home"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _weights(path):
    return load_file(str(path))


def _same(a, b, atol=0.0):
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_sigterm_saves_marks_killed_and_resume_is_exact(corpus, tmp_path):
    straight = _train(corpus, tmp_path / "straight", steps=40)
    args = train_args(corpus, tmp_path / "resumed", steps=40)
    process = subprocess.Popen([PYTHON, "-m", "rosie_model", "train", *args], env=train_env(tmp_path / "home"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "step 3/40 " in line:
            process.send_signal(signal.SIGTERM)
            break
    process.stdout.read()
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    checkpoints = sorted((tmp_path / "resumed" / "checkpoints" / "base").glob("step-*"))
    assert checkpoints and not (tmp_path / "resumed" / "weights" / "base.safetensors").exists()
    killed_at = int(checkpoints[-1].name.split("-")[1])
    assert 3 <= killed_at < 40
    state = torch.load(checkpoints[-1] / "state.pt", weights_only=True)  # nothing to unpickle
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}")
    assert mlflow.get_run(state["run_id"]).info.status == "KILLED"

    resumed = _train(corpus, tmp_path / "resumed", steps=40)
    assert resumed["run_id"] == state["run_id"]  # the same MLflow run goes on
    assert mlflow.get_run(state["run_id"]).info.status == "FINISHED"
    assert _same(_weights(straight["weights"]), _weights(resumed["weights"]))


def test_three_phases_chain_and_phase_three_adds_memory_attention(corpus, tmp_path):
    out = tmp_path / "model"
    _train(corpus, out, "base", steps=4)
    personality = _train(corpus, out, "personality", steps=4, lr=1e-3)
    final = _train(corpus, out, "emotion_memory", steps=4, lr=1e-2, emotion_head_fit_rows=100)
    assert {p.name for p in (out / "weights").iterdir()} == {"base.safetensors", "personality.safetensors",
                                                             "final.safetensors"}
    before, after = _weights(personality["weights"]), _weights(final["weights"])
    trunk = [k for k in before if k.startswith(("tok_emb", "norm")) or (".attn." in k or ".mlp." in k)]
    assert trunk and not all(torch.equal(before[k], after[k]) for k in trunk)  # the trunk learns to write facts
    frozen = _train(corpus, tmp_path / "frozen", "emotion_memory", steps=2, lr=1e-2, init_from=personality["weights"],
                    trainable=["memory", "persona", "emotion_head"])
    assert all(torch.equal(before[k], _weights(frozen["weights"])[k]) for k in trunk)  # unless told to freeze it
    gates = [k for k in after if k.endswith("memory.gate")]
    assert gates and all(after[k].abs().item() > 0 for k in gates)  # memory attention now takes part
    assert not torch.equal(before["emotion_head.weight"], after["emotion_head.weight"])
    assert (out / "config.json").exists() and (out / "tokenizer" / "tokenizer.json").exists()

    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}")
    run = MlflowClient().get_run(final["run_id"])
    assert run.data.params["train.phase"] == "emotion_memory" and "emotion_loss" in run.data.metrics
    assert {"emotion_fit_loss_before", "emotion_fit_loss_after", "emotion_fit_kept"} <= set(run.data.metrics)
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"test-train", "test-val"}
    # the phase's final weights are an MLflow 3 LoggedModel of the run, its final losses linked to it and the data
    from rosie_model.core.reporting import phase_model_id

    [model] = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                          filter_string=f"source_run_id = '{final['run_id']}'")
    assert model.name == "rosie-emotion_memory" and str(model.status) == "READY" and model.tags["rosie.step"] == "4"
    linked = {m.key: m for m in model.metrics}
    assert {"final_loss", "tokens_seen", "final_val_loss"} <= set(linked) and linked["final_loss"].step == 4
    assert linked["final_loss"].dataset_name == "test-train" and linked["final_val_loss"].dataset_name == "test-val"
    artifacts = {a.path for a in MlflowClient().list_logged_model_artifacts(model.model_id)}
    assert {"config.json", "tokenizer", "weights"} <= artifacts
    assert phase_model_id(Path(final["weights"])) == model.model_id  # how evaluation finds what it scored


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_under_torchrun_match_one(corpus, tmp_path, strategy):
    single = _train(corpus, tmp_path / "single", steps=4, batch_size=4)
    both = _train(corpus, tmp_path / strategy, launcher=(TORCHRUN, "--nproc-per-node", "2", "--master-port",
                                                         str(29600 + (strategy == "fsdp")), "-m"),
                  steps=4, batch_size=2, distributed=strategy)
    assert _same(_weights(single["weights"]), _weights(both["weights"]), atol=1e-5)


def test_clear_errors(corpus, tmp_path):
    args = train_args(corpus, tmp_path / "m", "personality")
    done = subprocess.run([PYTHON, "-m", "rosie_model", "train", *args], env=train_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "previous phase's weights" in done.stderr
    done = subprocess.run([PYTHON, "-m", "rosie_model", "train", "--phase", "base", "--set", "stepz=3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown training settings" in done.stderr
    with pytest.raises(DataError, match="another|made with tokenizer"):
        ShardDataset(corpus["train"], tokenizer_sha256="0" * 64)


def test_reader_deals_rows_to_ranks_and_resumes(corpus):
    data = ShardDataset(corpus["train"], corpus["tokenizer_sha"])
    single = [b["tokens"] for _, (b, _) in zip(range(5), data.batches(4, 0, 1, seed=3))]
    ranks = [[b["tokens"] for _, (b, _) in zip(range(5), data.batches(2, r, 2, seed=3))] for r in (0, 1)]
    for step in range(5):
        union = torch.cat([ranks[0][step], ranks[1][step]])
        assert sorted(map(tuple, union.tolist())) == sorted(map(tuple, single[step].tolist()))
    stream = data.batches(4, 0, 1, seed=3)
    for _ in range(3):
        _, position = next(stream)
    resumed = next(data.batches(4, 0, 1, seed=3, start=Position(**position.to_dict())))[0]["tokens"]
    assert torch.equal(resumed, single[3])


def test_replay_mixes_a_share_of_another_split_into_each_batch_and_resumes(corpus):
    from rosie_model.training.data import mixed_batches

    main = replay = ShardDataset(corpus["dialogue"], corpus["tokenizer_sha"])
    stream = mixed_batches([(main, 3, Position()), (replay, 1, Position())], 0, 1, seed=3)
    batches = [next(stream) for _ in range(4)]
    own = [b["tokens"] for _, (b, _) in zip(range(4), main.batches(3, 0, 1, seed=3))]
    for step, (batch, positions) in enumerate(batches):
        assert batch["tokens"].shape[0] == 4 and len(positions) == 2
        assert torch.equal(batch["tokens"][:3], own[step])  # the phase's own rows first, in their usual order
    after = batches[1][1]
    resumed = next(mixed_batches([(main, 3, after[0]), (replay, 1, after[1])], 0, 1, seed=3))[0]
    assert torch.equal(resumed["tokens"], batches[2][0]["tokens"])


def _launch_under_parent(args, env):
    """A trainer started by a parent process that names itself in ROSIE_EXIT_WITH (as rosie run does);
    returns (parent, trainer pid, the trainer's output lines)."""
    script = ("import os, subprocess, sys\n"
              "child = subprocess.Popen(sys.argv[1:], env={**os.environ, 'ROSIE_EXIT_WITH': str(os.getpid())})\n"
              "print(child.pid, flush=True)\n"
              "child.wait()\n")
    parent = subprocess.Popen([PYTHON, "-c", script, PYTHON, "-m", "rosie_model", "train", *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return parent, int(parent.stdout.readline()), parent.stdout


def _wait_gone(pid, seconds=180):
    import os
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_a_trainer_dies_with_its_launcher_and_a_folder_has_one_writer(corpus, tmp_path):
    import os

    import mlflow

    env = train_env(tmp_path / "home")
    args = train_args(corpus, tmp_path / "model", steps=100_000, checkpoint_every=50)
    parent, trainer, lines = _launch_under_parent(args, env)
    for line in lines:
        if "step 2/" in line:
            break
    # a second trainer on the same checkpoint folder stops at once, naming the first
    second = subprocess.run([PYTHON, "-m", "rosie_model", "train", *args], env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 2 and f"another trainer (pid {trainer})" in second.stderr
    os.kill(parent.pid, signal.SIGKILL)  # kill -9 of rosie run / rosie demo: no handler runs in the launcher
    parent.wait()
    assert _wait_gone(trainer), "the trainer outlived its launcher"
    checkpoints = sorted((tmp_path / "model" / "checkpoints" / "base").glob("step-*"))
    assert checkpoints, "the trainer stopped without its checkpoint"
    state = torch.load(checkpoints[-1] / "state.pt", weights_only=True)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}")
    assert mlflow.get_run(state["run_id"]).info.status == "KILLED"


def test_sigkilled_runs_are_reconciled_and_a_damaged_checkpoint_falls_back(corpus, tmp_path):
    import os

    import mlflow

    env = train_env(tmp_path / "home")
    straight = _train(corpus, tmp_path / "straight", steps=12)
    args = train_args(corpus, tmp_path / "model", steps=12, checkpoint_every=2)
    process = subprocess.Popen([PYTHON, "-m", "rosie_model", "train", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "step 7/12 " in line:
            os.kill(process.pid, signal.SIGKILL)  # no handler: the MLflow run stays RUNNING
            break
    process.wait()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}")
    running = mlflow.search_runs(experiment_names=["rosie-base"], filter_string="attributes.status = 'RUNNING'",
                                 output_format="list")
    assert len(running) == 1  # the killed run
    checkpoints = sorted((tmp_path / "model" / "checkpoints" / "base").glob("step-*"))
    assert len(checkpoints) >= 2
    (checkpoints[-1] / "model.safetensors").write_bytes((checkpoints[-1] / "model.safetensors").read_bytes()[:100])
    done = subprocess.run([PYTHON, "-m", "rosie_model", "train", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"damaged checkpoint set aside: {checkpoints[-1].name}" in done.stdout
    assert f"resuming at step {int(checkpoints[-2].name.split('-')[1])}" in done.stdout
    assert _same(_weights(straight["weights"]), _weights(json.loads(done.stdout.splitlines()[-1])["weights"]))
    assert not mlflow.search_runs(experiment_names=["rosie-base"], filter_string="attributes.status = 'RUNNING'",
                                  output_format="list")


def test_the_starting_weights_count_by_content_not_by_mtime(tmp_path):
    import os

    from rosie_model.training.config import TrainConfig

    weights = tmp_path / "base.safetensors"
    weights.write_bytes(b"the same weights")
    config = TrainConfig(train_data="x", tokenizer="y", phase="personality")
    before = config.inputs_digest("sha", weights)
    os.utime(weights, ns=(1, 1))  # base_model rewrote the same weights
    assert config.inputs_digest("sha", weights) == before
    weights.write_bytes(b"other weights")
    assert config.inputs_digest("sha", weights) != before


def test_a_run_left_running_by_sigkill_is_marked_killed_by_the_next_trainer(corpus, tmp_path):
    import os

    import mlflow

    env = train_env(tmp_path / "home")
    args = train_args(corpus, tmp_path / "model", steps=6, checkpoint_every=100)
    process = subprocess.Popen([PYTHON, "-m", "rosie_model", "train", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "step 2/6 " in line:
            os.kill(process.pid, signal.SIGKILL)  # before any checkpoint: the next run starts its own MLflow run
            break
    process.wait()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}")
    [orphan] = mlflow.search_runs(experiment_names=["rosie-base"], filter_string="attributes.status = 'RUNNING'",
                                  output_format="list")
    done = subprocess.run([PYTHON, "-m", "rosie_model", "train", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and "marked 1 MLflow run(s) KILLED" in done.stdout
    assert mlflow.get_run(orphan.info.run_id).info.status == "KILLED"
    assert json.loads(done.stdout.splitlines()[-1])["run_id"] != orphan.info.run_id


def test_identical_weights_are_not_rewritten(tmp_path):
    import os

    from rosie_model.core.checkpoint import save_weights

    path = tmp_path / "base.safetensors"
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    save_weights(weights, path, unless_identical=True)
    os.utime(path, ns=(1, 1))
    save_weights(weights, path, unless_identical=True)  # a re-run with no new steps
    assert path.stat().st_mtime_ns == 1 and not list(tmp_path.glob(".*tmp*"))
    save_weights({"w": weights["w"] + 1}, path, unless_identical=True)
    assert path.stat().st_mtime_ns != 1 and torch.equal(load_file(str(path))["w"], weights["w"] + 1)


def test_rows_grouped_by_length_cut_the_padding_keep_every_row_and_resume(tmp_path):
    import numpy as np

    from rosie_model.training.data import used_width

    pad, rng = 399, np.random.default_rng(0)
    rows = []
    for i in range(200):  # dialogue-like rows: a few long, most short, right-padded to the split's length
        length = int(rng.choice([6, 9, 14, SEQ_LEN + 1], p=[0.4, 0.3, 0.2, 0.1]))
        rows.append({"tokens": np.array([i % 300 + 1] * length + [pad] * (SEQ_LEN + 1 - length))})
    data = ShardDataset(write_split(tmp_path / "split", "x", rows, rows_per_shard=64, pad_id=pad))

    def epoch(group: int) -> list[torch.Tensor]:
        stream = data.batches(4, 0, 1, seed=3, group_by_length=group)
        return [next(stream)[0]["tokens"] for _ in range(50)]  # 200 rows: one epoch

    plain, grouped = epoch(0), epoch(8)
    key = lambda batches: sorted(tuple(r) for b in batches for r in b.tolist())  # noqa: E731
    assert key(grouped) == key(plain)  # the same rows, each once an epoch
    width = lambda batches: sum(used_width(b, pad, multiple=1) for b in batches) / len(batches)  # noqa: E731
    assert width(grouped) < 0.7 * width(plain)  # far fewer padding columns computed

    stream = data.batches(4, 0, 1, seed=3, group_by_length=8)
    for _ in range(20):  # across a shard boundary (64 rows a shard)
        _, position = next(stream)
    resumed = next(data.batches(4, 0, 1, seed=3, start=Position(**position.to_dict()), group_by_length=8))[0]
    assert torch.equal(resumed["tokens"], grouped[20])
