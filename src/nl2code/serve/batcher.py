"""Serialise model calls through one worker that batches concurrent requests.

Generators are CPU-bound and not thread-safe, so every call runs on one dedicated thread. Requests
wait in an asyncio queue; the worker takes the first one, collects more for up to ``max_wait_ms``
(or until ``max_prompts`` prompts are gathered), and answers every group of requests that share a
:class:`GenerationConfig` with one ``generate`` call. Requests with an explicit seed and infill
requests are run alone: a seed promises the same output for the same request, which a batch whose
composition varies cannot keep. Unseeded batches draw their seed from the server's generator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from nl2code.api import Candidate, Generator
from nl2code.serve.schema import Job, RequestError


@dataclass
class _Pending:
    job: Job
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters for ``/health``: requests answered and model calls made."""

    requests: int = 0
    generate_calls: int = 0
    prompts: int = 0
    errors: int = 0
    busy_s: float = 0.0
    largest_batch: int = 0  # requests answered by one call

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclass
class Batcher:
    """The single worker in front of a generator (start it inside the running event loop)."""

    generator: Generator
    rng: np.random.Generator
    max_prompts: int = 32
    max_wait_ms: float = 10.0
    stats: BatchStats = field(default_factory=BatchStats)

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nl2code-generate")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, job: Job) -> list[list[Candidate]]:
        """Candidates for every prompt of ``job`` (raises :class:`RequestError` for a bad prompt)."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(job, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_ms / 1000
        # Poll rather than wait_for(queue.get()): before Python 3.12 a get that completes as the
        # timeout fires can lose its item, and with it a client's request.
        while sum(len(p.job.prompts) for p in batch) < self.max_prompts:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
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

    async def _call(self, fn: Callable[[], list[list[Candidate]]]) -> list[list[Candidate]]:
        start = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        finally:
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
            results = await self._call(lambda: self.generator.generate(prompts, cfg))
        except Exception:
            # One bad prompt must not fail its neighbours: answer each request on its own.
            for p in live:
                await self._answer_one(p)
            return
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        start = 0
        for p in live:
            end = start + len(p.job.prompts)
            self._settle(p, results[start:end])
            start = end

    async def _answer_one(self, p: _Pending) -> None:
        seed = p.job.config.seed if p.job.seeded else int(self.rng.integers(0, 2**31 - 1))
        try:
            results = await self._call(self._run_job(p.job, seed))
        except ValueError as e:
            # Backends raise ValueError for input they cannot take (e.g. longer than the context).
            self._fail(p, RequestError(f"cannot generate for this request: {e}", "prompt", 400))
            return
        except Exception as e:  # a server-side failure: the app answers 500, the worker lives on
            self._fail(p, e)
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
