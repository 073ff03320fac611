import dataclasses

import pytest
import torch

from rosie_model.core.config import PRESETS, ModelConfig, preset
from rosie_model.core.model import KVCache, MemoryAttention, RosieTransformer

SIZES = {"rosie-125m": 125e6, "rosie-500m": 500e6, "rosie-1b": 1e9}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_instantiate_on_meta_and_match_their_names(name):
    with torch.device("meta"):
        model = RosieTransformer(preset(name))
    count = model.num_parameters()
    if name in SIZES:
        assert abs(count - SIZES[name]) / SIZES[name] < 0.10, f"{name}: {count / 1e6:.1f}M"
    if name == "rosie-seed":
        config = model.config
        assert (config.n_layers, config.d_model, config.n_heads, config.max_seq_len, config.vocab_size) == (
            16, 1024, 16, 2048, 32_000)


def _tiny(**overrides):
    torch.manual_seed(0)
    return RosieTransformer(preset("tiny", vocab_size=300, **overrides)).eval()


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_kv_cache_decoding_matches_the_full_forward(kv_heads):
    model = _tiny(n_kv_heads=kv_heads)
    ids = torch.randint(0, 300, (2, 24))
    with torch.no_grad():
        full = model.lm_logits(model(ids))
        cache = KVCache.empty(model.config, 2, 64, ids.device, torch.float32)
        pieces = [model.lm_logits(model(ids[:, :5], cache=cache)), model.lm_logits(model(ids[:, 5:9], cache=cache))]
        pieces += [model.lm_logits(model(ids[:, t : t + 1], cache=cache)) for t in range(9, 24)]
    assert torch.allclose(full, torch.cat(pieces, dim=1), atol=1e-5)


def test_decoding_with_a_memory_bank_projects_it_once_and_matches_the_full_forward(monkeypatch):
    model = _tiny()
    ids, facts = torch.randint(0, 300, (1, 12)), torch.randint(2, 300, (1, 3, 4))
    projections, project = [], MemoryAttention.project
    monkeypatch.setattr(MemoryAttention, "project", lambda self, memory: projections.append(1) or project(self, memory))
    with torch.no_grad():
        for block in model.blocks:
            if block.memory is not None:
                block.memory.gate.fill_(0.5)  # memory attention takes part
        memory, present = model.encode_memory(facts)
        full = model.lm_logits(model(ids, memory=memory, memory_mask=present))
        projections.clear()
        cache = KVCache.empty(model.config, 1, 32, ids.device, torch.float32)
        pieces = [model.lm_logits(model(ids[:, :4], memory=memory, memory_mask=present, cache=cache))]
        pieces += [model.lm_logits(model(ids[:, t : t + 1], memory=memory, memory_mask=present, cache=cache))
                   for t in range(4, 12)]
    assert torch.allclose(full, torch.cat(pieces, dim=1), atol=1e-5)
    assert len(projections) == len(model.config.memory_layers)  # once per memory layer, not once per token


def test_memory_and_persona_change_nothing_at_init_and_something_once_trained():
    model = _tiny()
    ids = torch.randint(0, 300, (2, 16))
    facts = torch.randint(2, 300, (2, 3, 4))
    with torch.no_grad():
        base = model.lm_logits(model(ids))
        memory, present = model.encode_memory(facts)
        with_memory = model.lm_logits(model(ids, persona=torch.tensor([0, 1]), memory=memory, memory_mask=present))
        assert torch.equal(base, with_memory)
        for block in model.blocks:
            if block.memory is not None:
                block.memory.gate.fill_(0.5)
        assert not torch.allclose(base, model.lm_logits(model(ids, memory=memory, memory_mask=present)))


def test_a_fact_longer_than_the_context_is_read_up_to_it():
    model = _tiny()
    long_fact = torch.randint(2, 300, (1, 2, model.config.max_seq_len + 9))  # a long past turn in the memory block
    with torch.no_grad():
        memory, present = model.encode_memory(long_fact)
    assert present.shape == (1, 2 * model.config.max_seq_len) and memory.shape[1] == 2 * model.config.max_seq_len


def test_emotion_head_reads_where_rosies_turn_starts():
    model = _tiny()
    hidden = model(torch.randint(0, 300, (3, 10)))
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[:, 6:] = True
    logits = model.emotion_logits(hidden, mask)
    assert logits.shape == (3, len(model.config.emotions))
    changed = hidden.clone()
    changed[:, 7:] += 100.0  # after her turn began (where the emotion token is already visible): no effect
    changed[:, :6] -= 100.0  # before it: no effect either, the state at the turn start carries the context
    assert torch.allclose(logits, model.emotion_logits(changed, mask))
    changed[:, 6] += 1.0
    assert not torch.allclose(logits, model.emotion_logits(changed, mask))


def test_config_round_trips_and_rejects_nonsense(tmp_path):
    config = preset("tiny", vocab_size=300)
    config.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == config
    with pytest.raises(ValueError):
        dataclasses.replace(config, memory_layers=(9,))
    with pytest.raises(ValueError, match="longer than max_seq_len"):
        _tiny()(torch.zeros(1, 300, dtype=torch.long))
