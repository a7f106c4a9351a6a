"""The one training loop. Model, objective and data come in as arguments; read it top to bottom.

Per optimizer step: set the LR from the step; draw ``grad_accum`` micro-batches; run the objective
and backpropagate each micro-loss scaled so that the update is the mean over every loss unit of
the global batch (across micro-batches and data-parallel ranks); stop on a non-finite loss; clip;
step AdamW; update the EMA. Then, by the clock of the step counter: log, evaluate, preview
samples, checkpoint. Checkpoints are only taken between optimizer steps, and hold everything the
next step depends on, so a resumed run repeats an uninterrupted one bit for bit on the CPU.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nl2code.data.collate import Batch
from nl2code.data.pipeline import BatchIterator, PreviewSet
from nl2code.objectives.base import Objective
from nl2code.rundir import RunDir
from nl2code.train import distributed as dist
from nl2code.train.best import BestWeights
from nl2code.train.checkpoint import (
    latest_valid_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    save_weights,
)
from nl2code.train.config import TrainConfig
from nl2code.train.optim import EMA, build_optimizer, lr_at
from nl2code.train.runlog import RunLogger
from nl2code.utils.device import autocast, resolve_precision
from nl2code.utils.seed import derive_seed, global_rng_state, set_global_rng_state


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss, unusable resume state); the message says why."""


@dataclass
class EvalSpec:
    """What periodic evaluation and sample previews need.

    Attributes:
        batches: returns a fresh iterable of this rank's evaluation batches (same order each call).
        preview: prompts for the sample preview (rank 0 only), or None.
        decode: token ids -> text, for the preview.
        eos_id: end-of-sequence id that stops a preview sample.
    """

    batches: Callable[[], Iterable[Batch]] | None = None
    preview: PreviewSet | None = None
    decode: Callable[[list[int]], str] | None = None
    eos_id: int = -1


@dataclass
class LoopResult:
    status: Literal["completed", "interrupted"]
    step: int
    last_checkpoint: Path | None
    weights: Path | None  # the out_dir's weights file when completed


def print_status(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


@contextlib.contextmanager
def _stop_on_signals(flag: dict[str, int | None], say: Callable[[str], None]) -> Iterator[None]:
    """First SIGINT/SIGTERM: ask the loop to checkpoint and stop after this step. Second: abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signum
        say(f"{signal.Signals(signum).name}: saving a checkpoint after this step (repeat to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    objective: Objective,
    batches: Iterable[Batch],
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
) -> dict[str, float]:
    """Loss and metrics averaged over every loss unit of ``batches`` on all ranks."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)  # same noise at every evaluation
    sums: dict[str, torch.Tensor] = {}
    weight = 0.0
    for batch in batches:
        w = float(objective.weight(batch))
        with autocast(device, dtype):
            loss, metrics = objective(model, batch.to(device), gen)
        for k, v in {"loss": loss, **metrics}.items():
            sums[k] = sums.get(k, torch.zeros((), device=device)) + v.detach().float() * w
        weight += w
    model.train(was_training)
    # Every rank must reduce the same tensor, even one whose share of a small eval set was empty.
    keys = sorted(set().union(*dist.all_gather_objects(sorted(sums))))
    zero = torch.zeros((), device=device)
    packed = torch.stack([*(sums.get(k, zero) for k in keys), torch.tensor(weight, device=device)])
    dist.all_reduce_sum(packed)
    total = float(packed[-1])
    return {k: float(packed[i]) / max(total, 1.0) for i, k in enumerate(keys)}


def train(
    model: nn.Module,
    objective: Objective,
    batches: BatchIterator,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    device: torch.device,
    info: dist.DistInfo | None = None,
    evaluation: EvalSpec | None = None,
    run_config: Any = None,
    resume: bool = False,
    stage: str = "main",
    log_dir: Path | None = None,
    say: Callable[[str], None] = print_status,
) -> LoopResult:
    """Train ``model`` on ``batches`` with ``objective`` for ``cfg.max_steps`` optimizer steps.

    Args:
        out_dir: a run (or stage) directory (:class:`nl2code.rundir.RunDir`): gets its checkpoints and,
            at the end, its weights file (EMA weights when ``cfg.ema_decay > 0``).
        info: this process's data-parallel rank (default: single process).
        evaluation: evaluation batches and preview prompts, or None.
        run_config: the resolved run config, saved in every checkpoint.
        resume: continue from the newest valid checkpoint in ``out_dir/checkpoints`` (if any).
        stage: name recorded with every metric (multi-stage runs).
        log_dir: where ``metrics.jsonl``, ``samples.jsonl`` and ``tb/`` go (default ``out_dir``).
        say: prints one status line (only rank 0's are shown).

    Raises:
        TrainingError: on a non-finite loss or gradient; the last good checkpoint is left as is.
    """
    info = info or dist.DistInfo()
    out_dir, log_dir = Path(out_dir), Path(log_dir or out_dir)
    main = info.is_main
    say = say if main else (lambda msg: None)
    evaluation = evaluation or EvalSpec()
    ckpt_root = RunDir(out_dir).checkpoints
    dtype = resolve_precision(cfg.precision, device)

    # Global RNG (dropout) and the objective's generator differ per rank, derived from the seed.
    torch.manual_seed(derive_seed(cfg.seed, info.rank, 1))
    gen = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, info.rank, 2))
    model.to(device)
    model.train()
    opt = build_optimizer(model, cfg, device)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    step, tokens_seen, elapsed_before = 0, 0, 0.0
    last_ckpt: Path | None = None

    if main:
        for stale in remove_stale_temporaries(ckpt_root):
            say(f"removed unfinished checkpoint {stale} left by an interrupted run")
    if resume:
        path = dist.broadcast_object(latest_valid_checkpoint(ckpt_root, say) if main else None)
        if path is None:
            say(f"no checkpoint in {ckpt_root}; starting stage '{stage}' from scratch")
        else:
            state, ema_weights = load_checkpoint(path, model, device)
            if state.get("stage", stage) != stage:
                raise TrainingError(f"{path}: belongs to stage {state['stage']!r}, not {stage!r}")
            opt.load_state_dict(state["optimizer"])
            batches.load_state_dict(state["data"])
            step, tokens_seen = int(state["step"]), int(state["tokens"])
            elapsed_before = float(state["elapsed_s"])
            if len(state["rng"]) == info.world_size:
                set_global_rng_state(state["rng"][info.rank]["global"], device)
                gen.set_state(state["rng"][info.rank]["generator"])
            else:
                say(f"warning: checkpoint has RNG states for {len(state['rng'])} ranks, this run has "
                    f"{info.world_size}; random streams restart (the data order is unaffected)")
            if ema is not None:
                if ema_weights is None:
                    raise TrainingError(f"{path}: has no EMA weights but train.ema_decay > 0")
                ema.load_state_dict(ema_weights)
            last_ckpt = path
            say(f"resumed stage '{stage}' from {path} (step {step})")

    ddp: nn.Module = model
    if info.enabled:
        ddp = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.ddp_find_unused,
        )

    def checkpoint() -> Path:
        rng = dist.all_gather_objects({"global": global_rng_state(device), "generator": gen.get_state()})
        path = ckpt_root / f"step_{step:08d}"
        if main:
            state = {
                "stage": stage,
                "step": step,
                "tokens": tokens_seen,
                "elapsed_s": elapsed_before + time.perf_counter() - t_start,
                "world_size": info.world_size,
                "optimizer": opt.state_dict(),
                "data": batches.state_dict(),
                "rng": rng,
            }
            path = save_checkpoint(ckpt_root, step, model=model, state=state, config=run_config,
                                   ema=ema.state_dict() if ema else None, keep_last=cfg.keep_last)
        dist.barrier()  # nobody runs ahead (or exits) before the checkpoint is on disk
        return path

    def ema_or_live() -> contextlib.AbstractContextManager:
        return ema.swapped_in(model) if ema is not None else contextlib.nullcontext(model)

    logger = RunLogger(log_dir, stage, start_step=step, enabled=main, tensorboard=cfg.tensorboard, say=say)
    best = BestWeights(model, out_dir, step) if cfg.keep_best and main else None
    mode = cfg.progress if cfg.progress != "auto" else ("bar" if sys.stderr.isatty() else "lines")
    bar = tqdm(total=cfg.max_steps, initial=step, desc=stage, file=sys.stderr, dynamic_ncols=True,
               disable=not main or mode != "bar")
    stop: dict[str, int | None] = {"signal": None}
    t_start = time.perf_counter()
    t_log, tokens_log, step_log = t_start, tokens_seen, step
    interval: dict[str, float] = {}
    budget_s = cfg.max_minutes * 60  # 0 = steps only; else the cosine follows the clock (optim.lr_at)
    try:
        with _stop_on_signals(stop, say):
            while step < cfg.max_steps:
                lr = lr_at(step, cfg, elapsed_before + time.perf_counter() - t_start)
                for group in opt.param_groups:
                    group["lr"] = lr
                micro = [next(batches) for _ in range(cfg.grad_accum)]
                weights = [float(objective.weight(b)) for b in micro]
                local = torch.tensor([sum(weights), sum(b.num_tokens for b in micro)], dtype=torch.float64)
                total_w, step_tokens = (float(x) for x in dist.all_reduce_sum(local.to(device)))
                if total_w == 0:
                    raise TrainingError(f"step {step + 1}: the global batch has no loss targets")
                sums: dict[str, torch.Tensor] = {}
                for i, batch in enumerate(micro):
                    last = i == len(micro) - 1
                    # Skip DDP's gradient all-reduce until the last micro-batch of the step.
                    sync = contextlib.nullcontext() if last or not info.enabled else ddp.no_sync()
                    with sync:
                        with autocast(device, dtype):
                            loss, metrics = objective(ddp, batch.to(device, non_blocking=True), gen)
                        # DDP averages gradients over ranks, hence the world_size factor.
                        (loss * (weights[i] * info.world_size / total_w)).backward()
                    for k, v in {"loss": loss, **metrics}.items():
                        prev = sums.get(k, torch.zeros((), device=device))
                        sums[k] = prev + v.detach().float() * weights[i]
                keys = sorted(sums)
                packed = dist.all_reduce_sum(torch.stack([sums[k] for k in keys])) / total_w
                values = dict(zip(keys, packed.tolist(), strict=True))
                if not math.isfinite(values["loss"]):
                    raise TrainingError(
                        f"loss is {values['loss']} at step {step + 1} of stage '{stage}'; stopped before "
                        f"applying it. Last good checkpoint: {last_ckpt or 'none'}"
                    )
                max_norm = cfg.clip if cfg.clip > 0 else math.inf
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
                if not math.isfinite(grad_norm):
                    raise TrainingError(
                        f"gradient norm is {grad_norm} at step {step + 1} of stage '{stage}'; stopped "
                        f"before applying it. Last good checkpoint: {last_ckpt or 'none'}"
                    )
                opt.step()
                opt.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(model)
                step += 1
                tokens_seen += int(step_tokens)
                bar.update(1)
                for k, v in {**values, "grad_norm": grad_norm}.items():
                    interval[k] = interval.get(k, 0.0) + v

                # The budget ends the stage at a step boundary; rank 0's clock decides for every rank.
                time_up = budget_s > 0 and dist.broadcast_object(
                    elapsed_before + time.perf_counter() - t_start >= budget_s
                )
                done = step == cfg.max_steps or time_up
                if step % cfg.log_every == 0 or done:
                    now = time.perf_counter()
                    n = step - step_log
                    rate = (tokens_seen - tokens_log) / max(now - t_log, 1e-9)
                    record = {k: v / n for k, v in interval.items()}
                    record.update(lr=lr, tokens=tokens_seen, tok_per_s=rate,
                                  elapsed_s=elapsed_before + now - t_start)
                    logger.log(step, "train", record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{rate:,.0f}")
                    if mode == "lines" and main:
                        eta = (cfg.max_steps - step) * (now - t_log) / n
                        if budget_s:
                            eta = min(eta, max(budget_s - elapsed_before - (now - t_start), 0.0))
                        say(f"[{stage}] step {step}/{cfg.max_steps} loss {record['loss']:.4f} lr {lr:.2e} "
                            f"{rate:,.0f} tok/s eta {time.strftime('%H:%M:%S', time.gmtime(eta))}")
                    t_log, tokens_log, step_log, interval = now, tokens_seen, step, {}

                if evaluation.batches is not None and cfg.eval_every and (step % cfg.eval_every == 0 or done):
                    seed = derive_seed(cfg.seed, info.rank, 3)
                    result = evaluate(model, objective, evaluation.batches(), device, dtype, seed)
                    if ema is not None:
                        with ema_or_live():
                            ema_result = evaluate(model, objective, evaluation.batches(), device, dtype, seed)
                        result.update({f"ema_{k}": v for k, v in ema_result.items()})
                    if result:
                        logger.log(step, "eval", result)
                        say(f"[{stage}] step {step} eval loss {result['loss']:.4f}")
                        if best is not None:
                            best.offer(result.get("ema_loss", result["loss"]), step, ema_or_live)

                preview = evaluation.preview
                if main and preview and preview.prompts and cfg.sample_every and (
                    step % cfg.sample_every == 0 or done
                ):
                    with ema_or_live(), autocast(device, dtype):
                        was_training = model.training
                        model.eval()
                        outs = objective.preview(model, preview.prompts, max_new_tokens=cfg.sample_tokens,
                                                 eos_id=evaluation.eos_id, generator=torch.Generator(device))
                        model.train(was_training)
                    decode = evaluation.decode or str
                    for j, out in enumerate(outs or []):
                        logger.sample(step, decode(preview.prompts[j]), decode(out), preview.references[j])

                interrupted = dist.all_reduce_max(
                    torch.tensor([float(stop["signal"] is not None)], device=device)
                ).item() > 0
                if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or done or interrupted:
                    last_ckpt = checkpoint()
                if interrupted:
                    say(f"stopped at step {step}; checkpoint {last_ckpt}. Continue with --resume.")
                    return LoopResult("interrupted", step, last_ckpt, None)
                if time_up:
                    say(f"[{stage}] {cfg.max_minutes:g} min budget spent at step {step}")
                    break

        if last_ckpt is None or last_ckpt.name != f"step_{step:08d}":
            last_ckpt = checkpoint()  # resumed at the very end: make sure the final state is saved
        weights_path = RunDir(out_dir).weights_file
        if main and not (best is not None and best.write_to(weights_path, say, stage)):
            with ema_or_live():
                save_weights(model, weights_path)
        dist.barrier()
        return LoopResult("completed", step, last_ckpt, weights_path)
    finally:
        bar.close()
        logger.close()
