"""The training loop called directly, on synthetic token data with a tiny CodeGen model."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import time

import numpy as np
import pytest
import torch
from runhelpers import assert_bit_identical, load_weights

from nl2code.data.collate import Example
from nl2code.data.pipeline import BatchIterator, PreviewSet, eval_batches
from nl2code.models import CodeGenConfig, build_model
from nl2code.objectives import CausalLMObjective
from nl2code.train.checkpoint import list_checkpoints, verify_checkpoint
from nl2code.train.config import TrainConfig
from nl2code.train.loop import EvalSpec, TrainingError, train

VOCAB, PAD = 40, 0


def examples(n: int = 48, seed: int = 0) -> list[Example]:
    """Sequences of a learnable pattern (counting mod VOCAB) with random lengths and starts."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length, start = int(rng.integers(6, 20)), int(rng.integers(1, VOCAB))
        ids = (start + np.arange(length)) % (VOCAB - 1) + 1
        out.append(Example(ids, np.ones(length, dtype=bool)))
    return out


def model() -> torch.nn.Module:
    cfg = CodeGenConfig(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, max_seq_len=32)
    return build_model(cfg, generator=torch.Generator().manual_seed(0))


def config(**kw) -> TrainConfig:
    base = dict(max_steps=12, batch_size=4, lr=1e-2, min_lr=1e-3, warmup_steps=2, ckpt_every=4, keep_last=5,
                log_every=1, eval_every=0, sample_every=0, tensorboard=False, progress="off", device="cpu",
                precision="fp32")
    return TrainConfig(**{**base, **kw})


def batches(cfg: TrainConfig, data: list[Example] | None = None) -> BatchIterator:
    return BatchIterator(data or examples(), batch_size=cfg.batch_size, pad_id=PAD, seed=cfg.seed)


def run(tmp_path, cfg: TrainConfig, objective=None, m=None, **kw):
    m = m if m is not None else model()
    return train(m, objective or CausalLMObjective(), batches(cfg), cfg, tmp_path, device=torch.device("cpu"),
                 say=lambda msg: None, **kw)


class PoisonAfter(CausalLMObjective):
    """Test-only objective: the loss becomes NaN from its ``n``-th call on."""

    def __init__(self, n: int):
        super().__init__()
        self.calls, self.n = 0, n

    def __call__(self, model, batch, generator):
        self.calls += 1
        loss, metrics = super().__call__(model, batch, generator)
        return (loss * float("nan") if self.calls >= self.n else loss), metrics


class InterruptAt(CausalLMObjective):
    """Test-only objective: delivers SIGINT to this process during its ``n``-th call (like Ctrl-C)."""

    def __init__(self, n: int):
        super().__init__()
        self.calls, self.n = 0, n

    def __call__(self, model, batch, generator):
        self.calls += 1
        if self.calls == self.n:
            signal.raise_signal(signal.SIGINT)
        return super().__call__(model, batch, generator)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match=r"loss is nan at step 7 .*step_00000004"):
        run(tmp_path, config(), PoisonAfter(7))
    steps = [s for s, _ in list_checkpoints(tmp_path / "checkpoints")]
    assert steps == [4]
    assert verify_checkpoint(tmp_path / "checkpoints" / "step_00000004") == 4
    assert not (tmp_path / "model.safetensors").exists()
    # The checkpoint holds finite weights from before the bad step.
    kept = load_weights(tmp_path / "checkpoints" / "step_00000004" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in kept.values())
    # The failing step was never logged as if it had happened.
    logged = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]


def test_sigint_checkpoints_at_the_step_boundary_and_resume_is_exact(tmp_path):
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    ref = run(tmp_path / "ref", config())
    assert ref.status == "completed"

    result = run(tmp_path / "run", config(), InterruptAt(6))
    assert (result.status, result.step) == ("interrupted", 6)
    assert verify_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000006") == 6
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    # A fresh process would rebuild the model and data from the seed; do the same here.
    resumed = run(tmp_path / "run", config(), resume=True)
    assert (resumed.status, resumed.step) == ("completed", 12)
    assert_bit_identical(tmp_path / "ref" / "model.safetensors", tmp_path / "run" / "model.safetensors")


def test_grad_accumulation_equals_the_larger_batch(tmp_path):
    """Micro-batches are weighted by their target tokens, so 2 x 4 examples == 1 x 8 examples."""
    run(tmp_path / "big", config(batch_size=8, max_steps=6, ckpt_every=0))
    run(tmp_path / "acc", config(batch_size=4, grad_accum=2, max_steps=6, ckpt_every=0))

    def losses(d):
        return [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()]

    np.testing.assert_allclose(losses(tmp_path / "acc"), losses(tmp_path / "big"), rtol=1e-5)
    a, b = load_weights(tmp_path / "acc" / "model.safetensors"), load_weights(tmp_path / "big" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_loss_decreases_and_eval_is_logged(tmp_path):
    data = examples()
    cfg = config(max_steps=40, eval_every=20, ckpt_every=0)
    spec = EvalSpec(batches=lambda: eval_batches(data[:8], batch_size=4, pad_id=PAD, limit=2))
    train(model(), CausalLMObjective(), batches(cfg, data), cfg, tmp_path, device=torch.device("cpu"),
          evaluation=spec, say=lambda msg: None)
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_loss = [r["loss"] for r in recs if r["split"] == "train"]
    assert train_loss[-1] < 0.6 * train_loss[0]
    evals = [r for r in recs if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [20, 40] and evals[1]["loss"] < evals[0]["loss"]


def test_ema_weights_are_exported_and_checkpointed(tmp_path):
    cfg = config(ema_decay=0.9, max_steps=6, ckpt_every=3)
    run(tmp_path, cfg)
    final = load_weights(tmp_path / "model.safetensors")
    ckpt = tmp_path / "checkpoints" / "step_00000006"
    ema = load_weights(ckpt / "ema.safetensors")
    live = load_weights(ckpt / "model.safetensors")
    assert all(torch.equal(final[k], ema[k]) for k in ema)
    assert not all(torch.equal(live[k], ema[k]) for k in ema)

    # Resuming an EMA run from its middle checkpoint reproduces the EMA exactly.
    shutil.rmtree(ckpt)
    (tmp_path / "model.safetensors").unlink()
    run(tmp_path, cfg, resume=True)
    again = load_weights(tmp_path / "model.safetensors")
    assert all(torch.equal(final[k], again[k]) for k in final)


def test_eval_previews_and_tensorboard_leave_training_untouched(tmp_path):
    """Evaluation and previews draw from their own generators: the trained weights are identical."""
    data = examples()
    plain = config(max_steps=6, ckpt_every=0)
    run(tmp_path / "plain", plain)
    busy = dataclasses.replace(plain, eval_every=2, sample_every=3, tensorboard=True, progress="bar")
    spec = EvalSpec(
        batches=lambda: eval_batches(data[:8], batch_size=4, pad_id=PAD, limit=2),
        preview=PreviewSet([[1, 2, 3]], ["4 5 6"]),
        decode=lambda ids: " ".join(map(str, ids)),
        eos_id=PAD,
    )
    run(tmp_path / "busy", busy, evaluation=spec)
    assert_bit_identical(tmp_path / "plain" / "model.safetensors", tmp_path / "busy" / "model.safetensors")
    samples = [json.loads(x) for x in (tmp_path / "busy" / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [3, 6] and samples[0]["prompt"] == "1 2 3"
    assert list((tmp_path / "busy" / "tb" / "main").glob("events.out.tfevents.*"))


def test_bf16_autocast_on_cpu(tmp_path):
    result = run(tmp_path, config(precision="bf16", max_steps=3, ckpt_every=0))
    assert result.status == "completed"
    losses = [json.loads(x)["loss"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(np.isfinite(losses))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_with_automatic_precision_resumes(tmp_path):
    cuda = torch.device("cuda")
    cfg = config(device="cuda", precision="auto", max_steps=6, ckpt_every=3)
    ref = train(model(), CausalLMObjective(), batches(cfg), cfg, tmp_path / "ref", device=cuda, say=lambda m: None)
    assert ref.status == "completed"
    run_dir = tmp_path / "run"
    result = train(model(), InterruptAt(4), batches(cfg), cfg, run_dir, device=cuda, say=lambda m: None)
    assert result.status == "interrupted"
    train(model(), CausalLMObjective(), batches(cfg), cfg, run_dir, device=cuda, resume=True, say=lambda m: None)
    a, b = load_weights(tmp_path / "ref" / "model.safetensors"), load_weights(run_dir / "model.safetensors")
    for k in a:  # CUDA kernels need not be bit-exact run to run; bf16 tolerance
        torch.testing.assert_close(a[k], b[k], atol=2e-2, rtol=2e-2)


def test_keep_last_prunes_old_checkpoints(tmp_path):
    run(tmp_path, config(ckpt_every=2, keep_last=2))
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [10, 12]


def test_resume_without_checkpoints_starts_fresh(tmp_path):
    a = run(tmp_path / "a", config(max_steps=4), resume=True)
    b = run(tmp_path / "b", config(max_steps=4))
    assert a.status == b.status == "completed"
    assert_bit_identical(tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors")


def test_stage_mismatch_on_resume_is_refused(tmp_path):
    run(tmp_path, config(max_steps=4), stage="pretrain")
    with pytest.raises(TrainingError, match="belongs to stage 'pretrain'"):
        run(tmp_path, config(max_steps=8), stage="finetune", resume=True)


def test_train_config_validation():
    with pytest.raises(ValueError, match="min_lr"):
        config(min_lr=1.0, lr=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        dataclasses.replace(config(), batch_size=0)


class Slow(CausalLMObjective):
    """Test-only objective: each call takes at least ``seconds`` (a stand-in for a big model)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def __call__(self, model, batch, generator):
        time.sleep(self.seconds)
        return super().__call__(model, batch, generator)


def test_max_minutes_stops_the_stage_and_the_cosine_follows_the_clock(tmp_path):
    # 0.05 s a step and a 1.5 s budget: about 30 steps fit, far fewer than max_steps.
    cfg = config(max_steps=1000, max_minutes=0.025, warmup_steps=4, ckpt_every=0)
    result = run(tmp_path, cfg, Slow(0.05))
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert 10 <= result.step <= 40
    assert rows[-1]["step"] == result.step
    assert rows[-1]["lr"] == pytest.approx(cfg.min_lr, rel=0.05)  # decayed over the steps that fit
    assert rows[-1]["elapsed_s"] < 1.5 * 1.5
    assert (tmp_path / "model.safetensors").is_file() and result.status == "completed"


def test_max_minutes_is_off_by_default_and_validated():
    assert TrainConfig().max_minutes == 0
    with pytest.raises(ValueError, match="max_minutes"):
        TrainConfig(max_minutes=-1)
