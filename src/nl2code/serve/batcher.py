"""Serialise model calls through one worker that batches concurrent requests.

Generators are CPU-bound and not thread-safe, so every call runs on one dedicated thread. Requests
wait in a bounded queue (a full queue refuses new ones with 429); the worker takes the first one,
collects more for up to ``max_wait_ms`` (or until ``max_prompts`` prompts are gathered), and answers
every group of requests that share a :class:`GenerationConfig` with one ``generate`` call. Requests
with an explicit seed and infill requests are run alone: a seed promises the same output for the same
request, which a batch whose composition varies cannot keep. Unseeded batches draw their seed from the
server's generator.

A request whose client goes away (its ``submit`` is cancelled) leaves the queue at once; a model call
whose requests have all gone stops at the model's next forward pass (a hook on the generator's
``model`` raises inside the worker thread). A call shared with live requests runs to the end and the
gone request's rows are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from nl2code.api import Candidate, Generator
from nl2code.serve.schema import Job, RequestError


@dataclass(eq=False)  # compared by identity: queue removal must find this very request
class _Pending:
    job: Job
    future: asyncio.Future


class _Abandoned(Exception):
    """Raised inside a model call once every request it serves has been cancelled."""


@dataclass
class BatchStats:
    """Counters for ``/health``: requests answered and model calls made."""

    requests: int = 0
    generate_calls: int = 0
    prompts: int = 0
    errors: int = 0
    busy_s: float = 0.0
    largest_batch: int = 0  # requests answered by one call
    cancelled: int = 0  # requests whose client went away before the answer
    stopped_calls: int = 0  # model calls stopped early because all their requests were cancelled
    rejected: int = 0  # requests refused because the queue was full

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclass
class Batcher:
    """The single worker in front of a generator (start it inside the running event loop).

    ``max_queue``: most requests waiting for the worker (not counting those it is answering); more
    are refused with a 429 :class:`RequestError`.
    """

    generator: Generator
    rng: np.random.Generator
    max_prompts: int = 32
    max_wait_ms: float = 10.0
    max_queue: int = 64
    stats: BatchStats = field(default_factory=BatchStats)

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nl2code-generate")
        self._running: list[_Pending] = []  # the requests of the model call in progress
        self._abort = threading.Event()  # set when all of them are gone; read by the hook
        self._in_call = threading.local()  # marks the worker thread while it runs a call
        self._hooks: list[Any] = []

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._hooks = self._install_hooks()

    async def stop(self) -> None:
        self._abort.set()  # a call in progress stops at its next step
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._waiting:
            self._waiting.popleft().future.cancel()
        self._pool.shutdown(wait=True)
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def queued(self) -> int:
        return len(self._waiting)

    async def submit(self, job: Job) -> list[list[Candidate]]:
        """Candidates for every prompt of ``job`` (raises :class:`RequestError` for a bad prompt or a full
        queue). Cancelling the awaiting task withdraws the request."""
        if self._arrived is None:
            raise RuntimeError("Batcher.start() was not called")
        if len(self._waiting) >= self.max_queue:
            self.stats.rejected += 1
            raise RequestError(
                f"server busy: {len(self._waiting)} requests are already queued (the limit is "
                f"{self.max_queue}); retry later",
                None,
                429,
                "rate_limit_error",
                "queue_full",
            )
        pending = _Pending(job, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        self._arrived.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._withdraw(pending)
            raise

    def _withdraw(self, p: _Pending) -> None:
        """Forget a request whose client went away; stop the running call if it served only the gone."""
        p.future.cancel()
        self.stats.cancelled += 1
        try:
            self._waiting.remove(p)
        except ValueError:
            pass  # already taken by the worker
        if any(q is p for q in self._running) and all(q.future.done() for q in self._running):
            self._abort.set()

    # -- stopping a model call from outside -------------------------------------------------------
    def _install_hooks(self) -> list[Any]:
        """Forward pre-hooks on the generator's model and its direct children (AR models run the
        root module each step; diffusion models run children such as the denoiser)."""
        model = getattr(self.generator, "model", None)
        if not isinstance(model, nn.Module):
            return []
        return [m.register_forward_pre_hook(self._check_abort) for m in (model, *model.children())]

    def _check_abort(self, _module: nn.Module, _args: Any) -> None:
        if getattr(self._in_call, "active", False) and self._abort.is_set():
            raise _Abandoned

    def _marked(self, fn: Callable[[], list[list[Candidate]]]) -> Callable[[], list[list[Candidate]]]:
        def run() -> list[list[Candidate]]:
            self._in_call.active = True
            try:
                return fn()
            finally:
                self._in_call.active = False

        return run

    # -- the worker -------------------------------------------------------------------------------
    async def _collect(self) -> list[_Pending]:
        assert self._arrived is not None
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._waiting.popleft()]
        deadline = time.monotonic() + self.max_wait_ms / 1000
        while sum(len(p.job.prompts) for p in batch) < self.max_prompts:
            if self._waiting:
                batch.append(self._waiting.popleft())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(0.002, left))
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            for group in self._groups(batch):
                await self._answer(group)

    def _groups(self, batch: list[_Pending]) -> list[list[_Pending]]:
        """Requests that can share one call: same settings, no seed, no suffix; the rest alone."""
        groups: dict[object, list[_Pending]] = {}
        alone: list[list[_Pending]] = []
        for p in batch:
            if p.job.seeded or p.job.suffix is not None:
                alone.append([p])
            else:
                groups.setdefault(dataclasses.replace(p.job.config, seed=0), []).append(p)
        return list(groups.values()) + alone

    async def _call(
        self, live: list[_Pending], fn: Callable[[], list[list[Candidate]]]
    ) -> list[list[Candidate]] | None:
        """Run ``fn`` on the worker thread for the requests ``live``; None when they all went away."""
        self._running = live
        self._abort.clear()
        start = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._marked(fn))
        except _Abandoned:
            self.stats.stopped_calls += 1
            return None
        finally:
            self._running = []
            self.stats.busy_s += time.monotonic() - start
            self.stats.generate_calls += 1

    def _run_job(self, job: Job, seed: int) -> Callable[[], list[list[Candidate]]]:
        cfg = dataclasses.replace(job.config, seed=seed)
        if job.suffix is not None:
            return lambda: [self.generator.infill(p, job.suffix or "", cfg) for p in job.prompts]
        return lambda: self.generator.generate(list(job.prompts), cfg)

    async def _answer(self, group: list[_Pending]) -> None:
        live = [p for p in group if not p.future.done()]  # skip clients that went away
        if not live:
            return
        if len(live) == 1:
            await self._answer_one(live[0])
            return
        seed = int(self.rng.integers(0, 2**31 - 1))
        prompts = [q for p in live for q in p.job.prompts]
        cfg = dataclasses.replace(live[0].job.config, seed=seed)
        try:
            results = await self._call(live, lambda: self.generator.generate(prompts, cfg))
        except Exception:
            # One bad prompt must not fail its neighbours: answer each request on its own.
            for p in live:
                await self._answer_one(p)
            return
        if results is None:
            return
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        start = 0
        for p in live:
            end = start + len(p.job.prompts)
            self._settle(p, results[start:end])
            start = end

    async def _answer_one(self, p: _Pending) -> None:
        if p.future.done():  # gone while its neighbours were answered
            return
        seed = p.job.config.seed if p.job.seeded else int(self.rng.integers(0, 2**31 - 1))
        try:
            results = await self._call([p], self._run_job(p.job, seed))
        except ValueError as e:
            # Backends raise ValueError for input they cannot take (e.g. longer than the context).
            self._fail(p, RequestError(f"cannot generate for this request: {e}", "prompt", 400))
            return
        except Exception as e:  # a server-side failure: the app answers 500, the worker lives on
            self._fail(p, e)
            return
        if results is None:
            return
        self.stats.largest_batch = max(self.stats.largest_batch, 1)
        self._settle(p, results)

    def _fail(self, p: _Pending, error: Exception) -> None:
        self.stats.errors += 1
        if not p.future.done():
            p.future.set_exception(error)

    def _settle(self, p: _Pending, results: list[list[Candidate]]) -> None:
        self.stats.requests += 1
        self.stats.prompts += len(p.job.prompts)
        if not p.future.done():
            p.future.set_result(results)
