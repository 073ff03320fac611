"""The emotion head fitted on its own after a phase: rows drawn evenly across emotions, and a head that reads the
message instead of showing the common face."""

from collections import Counter

import numpy as np
import torch

from rosie_model.core.config import preset
from rosie_model.core.model import RosieTransformer
from rosie_model.training.data import ShardDataset
from rosie_model.training.emotion_fit import fit_emotion_head, labelled_rows
from tests.rosie_model.conftest import SEQ_LEN, write_split

HAPPY = 1
#: The token each emotion's messages end with: what a head has to read to tell them apart.
CUE = {emotion: 100 + 7 * emotion for emotion in range(10)}


def _rows(count: int, seed: int) -> list[dict]:
    """Dialogue rows whose label is written in the message: 70% happy, the rest spread over the other nine, as
    the demo's dialogues are mostly greetings and small talk; a tenth carry no label."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(count):
        emotion = HAPPY if rng.random() < 0.7 else int(rng.choice([e for e in range(10) if e != HAPPY]))
        tokens = rng.integers(20, 90, SEQ_LEN + 1)
        tokens[SEQ_LEN // 2 - 4:SEQ_LEN // 2] = CUE[emotion]   # the end of the user's message
        rows.append({"tokens": tokens, "loss_mask": (np.arange(SEQ_LEN + 1) >= SEQ_LEN // 2).tolist(),
                     "emotion": -1 if n % 10 == 9 else emotion, "persona": 0, "memory": []})
    return rows


def test_the_rows_are_drawn_evenly_across_emotions(corpus, tmp_path):
    split = ShardDataset(write_split(tmp_path / "train", corpus["tokenizer_sha"], _rows(1500, 0)))
    rows = labelled_rows([(split, 200)], classes=10, seed=3)
    counts = Counter(row["emotion"] for row in rows)
    assert -1 not in counts and len(counts) == 10 and max(counts.values()) <= 20   # 200 // 10 each, at most
    assert counts[HAPPY] == 20 and min(counts.values()) >= 15  # the rare ones as far as 1,500 rows have them


def test_the_fitted_head_reads_the_message_where_the_trained_one_shows_the_common_face(corpus, tmp_path):
    torch.manual_seed(0)
    core = RosieTransformer(preset("tiny", vocab_size=400, max_seq_len=SEQ_LEN))
    with torch.no_grad():  # a head that learned only the prior: happy, whatever was said
        core.emotion_head.weight.zero_()
        core.emotion_head.bias.zero_()
        core.emotion_head.bias[HAPPY] = 3.0
    split = ShardDataset(write_split(tmp_path / "train", corpus["tokenizer_sha"], _rows(1500, 0)))
    fit = fit_emotion_head(core, core, [(split, 300)], torch.device("cpu"), seed=3)
    assert fit is not None and fit.kept and fit.loss_after < fit.loss_before
    assert "fitted head kept" in fit.summary() and set(fit.metrics()) >= {"emotion_fit_kept"}

    fresh = [row for row in _rows(300, 1) if row["emotion"] >= 0]   # rows the fit never saw
    tokens = torch.tensor(np.stack([row["tokens"] for row in fresh])[:, :SEQ_LEN].astype(np.int64))
    mask = torch.tensor([row["loss_mask"][1:] for row in fresh])
    with torch.no_grad():
        shown = core.emotion_logits(core(tokens), mask).argmax(-1).tolist()
    truth = [row["emotion"] for row in fresh]
    rare = [(s, t) for s, t in zip(shown, truth) if t != HAPPY]
    assert sum(s == t for s, t in rare) / len(rare) >= 0.9  # sad messages get a sad face, not a happy one
    assert sum(s == t for s, t in zip(shown, truth)) / len(truth) >= 0.9
