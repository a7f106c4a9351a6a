"""Padding, packing and the deterministic, resumable, sharded batch iterator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nl2code.data.collate import Example, pack_examples, pad_collate
from nl2code.data.pipeline import BatchIterator, eval_batches


def ex(*ids: int, mask: list[bool] | None = None, **extras) -> Example:
    return Example(np.array(ids), np.array(mask if mask is not None else [True] * len(ids)),
                   {k: np.array(v) for k, v in extras.items()})


def corpus(n: int = 20) -> list[Example]:
    return [ex(*range(i + 1, i + 2 + i % 5)) for i in range(n)]  # distinct first token = i + 1


def test_pad_collate_right_pads_and_masks():
    b = pad_collate([ex(5, 6, 7, mask=[False, True, True]), ex(8)], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b.attention_mask.tolist() == [[True, True, True], [True, False, False]]
    assert b.loss_mask.tolist() == [[False, True, True], [True, False, False]]
    assert b.input_ids.dtype == torch.long and len(b) == 2 and b.num_tokens == 4


def test_pad_to_multiple_and_extras():
    b = pad_collate([ex(1, 2, nl=[9, 9, 9]), ex(3, nl=[9])], pad_id=0, pad_to_multiple=4)
    assert b.input_ids.shape == (2, 4)
    assert b.extras["nl"].tolist() == [[9, 9, 9, 0], [9, 0, 0, 0]]
    assert b.extras["nl_mask"].tolist() == [[True, True, True, False], [True, False, False, False]]
    with pytest.raises(ValueError, match="disagree on extras"):
        pad_collate([ex(1, nl=[2]), ex(3)], pad_id=0)
    with pytest.raises(ValueError, match="empty"):
        pad_collate([], pad_id=0)


def test_example_validates_shapes():
    with pytest.raises(ValueError, match="equal length"):
        Example(np.array([1, 2]), np.array([True]))


def test_pack_examples_fills_rows_and_reports_the_remainder():
    rows, dropped = pack_examples([ex(1, 2, 3), ex(4, 5, mask=[False, True]), ex(6, 7, 8, 9)], max_len=4)
    assert [r.input_ids.tolist() for r in rows] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert rows[0].loss_mask.tolist() == [True, True, True, False]
    assert dropped == 1
    with pytest.raises(ValueError, match="extras"):
        pack_examples([ex(1, nl=[2])], 4)


def first_tokens(batch) -> list[int]:
    return batch.input_ids[:, 0].tolist()


def test_iterator_is_deterministic_and_covers_each_epoch_once():
    a = BatchIterator(corpus(), batch_size=4, pad_id=0, seed=3)
    b = BatchIterator(corpus(), batch_size=4, pad_id=0, seed=3)
    epoch = [t for _ in range(5) for t in first_tokens(next(a))]
    assert sorted(epoch) == list(range(1, 21))
    assert epoch == [t for _ in range(5) for t in first_tokens(next(b))]
    second = [t for _ in range(5) for t in first_tokens(next(a))]
    assert sorted(second) == sorted(epoch) and second != epoch  # reshuffled per epoch
    c = BatchIterator(corpus(), batch_size=4, pad_id=0, seed=4)
    assert [t for _ in range(5) for t in first_tokens(next(c))] != epoch
    ordered = BatchIterator(corpus(), batch_size=4, pad_id=0, seed=3, shuffle=False)
    assert first_tokens(next(ordered)) == [1, 2, 3, 4]


def test_resume_mid_epoch_continues_the_same_stream():
    full = BatchIterator(corpus(), batch_size=3, pad_id=0, seed=0)  # 6 batches per epoch, 2 dropped
    stream = [first_tokens(next(full)) for _ in range(15)]
    part = BatchIterator(corpus(), batch_size=3, pad_id=0, seed=0)
    for _ in range(8):
        next(part)
    state = part.state_dict()
    assert (state["epoch"], state["index"]) == (1, 2)
    resumed = BatchIterator(corpus(), batch_size=3, pad_id=0, seed=0)
    resumed.load_state_dict(state)
    assert [first_tokens(next(resumed)) for _ in range(7)] == stream[8:]
    with pytest.raises(ValueError, match="num_examples=20 but this run has num_examples=19"):
        BatchIterator(corpus(19), batch_size=3, pad_id=0, seed=0).load_state_dict(state)


def test_ranks_split_each_global_batch_exactly():
    one = BatchIterator(corpus(), batch_size=4, pad_id=0, seed=1)
    ranks = [BatchIterator(corpus(), batch_size=4, pad_id=0, seed=1, rank=r, world_size=2) for r in range(2)]
    for _ in range(12):
        whole = first_tokens(next(one))
        assert [t for it in ranks for t in first_tokens(next(it))] == whole
    with pytest.raises(ValueError, match="not divisible"):
        BatchIterator(corpus(), batch_size=3, pad_id=0, seed=1, world_size=2)
    with pytest.raises(ValueError, match="only 20 examples for a batch_size of 32"):
        BatchIterator(corpus(), batch_size=32, pad_id=0, seed=1)


def test_packed_iterator_yields_full_rows():
    it = BatchIterator(corpus(), batch_size=2, pad_id=0, seed=0, pack_len=8)
    batch = next(it)
    assert batch.input_ids.shape == (2, 8) and batch.attention_mask.all()
    total = sum(len(e) for e in corpus())
    assert it.batches_per_epoch == (total // 8) // 2


def test_eval_batches_are_fixed_and_shard_without_loss():
    data = corpus(10)
    whole = [t for b in eval_batches(data, batch_size=4, pad_id=0, limit=10) for t in first_tokens(b)]
    assert whole == list(range(1, 11))
    sharded = [[t for b in eval_batches(data, batch_size=4, pad_id=0, limit=10, rank=r, world_size=3)
                for t in first_tokens(b)] for r in range(3)]
    assert sorted(t for s in sharded for t in s) == whole
    assert len(list(eval_batches(data, batch_size=4, pad_id=0, limit=2))) == 2
