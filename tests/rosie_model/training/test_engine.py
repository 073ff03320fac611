"""The training engine's parts that decide how busy a GPU stays, specified on the CPU.

The meta device computes shapes and no values: a step that reads a number back from the device (``float(loss)``,
a boolean gather, ``.item()``) fails there, so a step that runs on it queues its work without waiting for it.
"""

import threading
import time

import pytest
import torch
import torch.nn.functional as F

from rosie_model.training.config import TrainConfig
from rosie_model.training.data import Position, Prefetch, ShardDataset, mixed_batches
from rosie_model.training.distributed import full_state
from rosie_model.training.saver import CheckpointWriter
from rosie_model.training.trainer import Trainer, cross_entropy_sum
from tests.rosie_model.conftest import SEQ_LEN


def _config(corpus, tmp_path, **settings) -> TrainConfig:
    return TrainConfig(**{"phase": "base", "train_data": str(corpus["train"]), "tokenizer": str(corpus["tokenizer"]),
                          "out_dir": str(tmp_path / "model"), "batch_size": 4, "steps": 3,
                          "model_overrides": {"max_seq_len": SEQ_LEN}, **settings})


@pytest.mark.parametrize("phase", ["base", "emotion_memory"])
def test_a_training_step_never_waits_for_the_device(corpus, tmp_path, phase):
    settings = {"phase": phase, "train_data": str(corpus["dialogue"])} if phase != "base" else {}
    if phase != "base":  # phase 3 starts from phase 2's weights: any will do on the meta device
        from rosie_model.core.checkpoint import save_weights
        from rosie_model.core.model import RosieTransformer
        from rosie_model.training.trainer import model_config_for

        config = _config(corpus, tmp_path)
        model = RosieTransformer(model_config_for(config, corpus["tokenizer"]))
        save_weights(model.state_dict(), tmp_path / "start.safetensors")
        settings["init_from"] = str(tmp_path / "start.safetensors")
    trainer = Trainer(_config(corpus, tmp_path, device="meta", dtype="float32", loss_chunk_rows=16, **settings))
    batches = trainer.batches()
    for _ in range(2):
        parts, grad_norm = trainer.train_step(batches)
    batches.close()
    assert parts["lm_loss"].device.type == "meta" and grad_norm.device.type == "meta"
    assert len(trainer.unread) == 2 and trainer.step == 2  # the losses wait on the device until a log line reads them
    if phase != "base":
        assert "emotion_loss" in parts


def test_the_loss_in_chunks_is_the_loss_whole(corpus):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    whole = F.cross_entropy(head(hidden), targets, reduction="sum")
    whole.backward()
    expected = (hidden.grad.clone(), head.weight.grad.clone())
    hidden.grad = head.weight.grad = None
    chunked = cross_entropy_sum(head, hidden, targets, chunk=8)   # 5 chunks, the last of 5 rows
    chunked.backward()
    assert torch.allclose(chunked, whole, atol=1e-4)
    assert torch.allclose(hidden.grad, expected[0], atol=1e-6) and torch.allclose(head.weight.grad, expected[1], atol=1e-6)


def test_prefetch_keeps_the_order_and_raises_where_the_data_broke(corpus):
    data = ShardDataset(corpus["train"], corpus["tokenizer_sha"])
    direct = mixed_batches([(data, 4, Position())], 0, 1, seed=3)
    ahead = Prefetch(mixed_batches([(data, 4, Position())], 0, 1, seed=3))
    for _ in range(12):  # past a shard boundary (40 rows a shard)
        (want, want_at), (got, got_at) = next(direct), next(ahead)
        assert torch.equal(want["tokens"], got["tokens"]) and want_at == got_at
    ahead.close()

    def broken():
        yield {"tokens": torch.zeros(1)}, []
        raise ValueError("shard-00003.parquet: sha256 does not match")

    ahead = Prefetch(broken())
    next(ahead)
    with pytest.raises(ValueError, match="shard-00003"):
        next(ahead)


def test_a_checkpoint_written_in_the_background_is_the_state_it_was_given(tmp_path, monkeypatch):
    from rosie_model.core.checkpoint import list_checkpoints, load_checkpoint
    import rosie_model.training.saver as saver

    release = threading.Event()
    real = saver.save_checkpoint

    def slow_save(*args):  # the disk is slow: training goes on meanwhile
        release.wait(timeout=60)
        return real(*args)

    monkeypatch.setattr(saver, "save_checkpoint", slow_save)
    model = torch.nn.Linear(2, 3, bias=False)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    before = {"w": model.weight.detach().clone(), "exp_avg": optimizer.state[model.weight]["exp_avg"].clone()}
    weights, optim = full_state(model, optimizer, {"weight"}, sharded=False)   # what the trainer hands the writer
    writer = CheckpointWriter()
    writer.submit(tmp_path, 1, weights, {"step": 1, "optimizer": optim}, keep=2)
    with torch.no_grad():
        model.weight += 5  # the next optimizer step changes the live tensors in place
    optimizer.state[model.weight]["exp_avg"] *= 3
    release.set()
    writer.wait()
    saved_weights, saved_state = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert torch.equal(saved_weights["weight"], before["w"])
    assert torch.equal(saved_state["optimizer"]["state"]["weight"]["exp_avg"], before["exp_avg"])

    def failing(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saver, "save_checkpoint", failing)
    writer.submit(tmp_path, 2, weights, {"step": 2}, keep=2)
    time.sleep(0)  # the error belongs to the training thread, at its next wait
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
