"""Dynamic batching: requests that arrive together share one forward pass.

Each request hands in its examples and awaits a future. One worker takes the first waiting request, then
keeps taking more until the batch holds `max_items` examples or `max_chars` characters of text (a cheap
bound on its tokens), or `max_wait` seconds have passed since the first; it runs the model once in a thread (the event
loop keeps accepting requests meanwhile) and hands every request its own slice of the predictions, in order.
With `max_wait=0` and `max_items=1` request, every request runs alone (batching off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher"]


@dataclass
class _Job:
    examples: Sequence[dict[str, Any]]
    future: asyncio.Future
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(v) for ex in self.examples for k, v in ex.items() if k != "where" and isinstance(v, str))


class Batcher:
    def __init__(self, run: Callable[[list[dict[str, Any]]], list[Any]], *, enabled: bool = True,
                 max_items: int = 64, max_chars: int = 64 * 512, max_wait: float = 0.005) -> None:
        self.run, self.enabled = run, enabled
        self.max_items, self.max_chars, self.max_wait = max_items, max_chars, max_wait
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.batches = self.examples = 0  # counters for /v1/model

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Finish what is queued, then end the worker."""
        if self.worker is not None:
            await self.queue.put(None)
            await self.worker

    async def submit(self, examples: Sequence[dict[str, Any]]) -> list[Any]:
        job = _Job(examples, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _work(self) -> None:
        pending: _Job | None = None
        while True:
            job = pending or await self.queue.get()
            pending = None
            if job is None:
                return
            jobs, items, chars = [job], len(job.examples), job.size
            deadline = time.monotonic() + self.max_wait
            while self.enabled and items < self.max_items and chars < self.max_chars:
                left = deadline - time.monotonic()
                try:
                    nxt = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if nxt is None or items + len(nxt.examples) > self.max_items or chars + nxt.size > self.max_chars:
                    pending = nxt  # it starts the next batch (or ends the worker after this one)
                    break
                jobs.append(nxt)
                items, chars = items + len(nxt.examples), chars + nxt.size
            await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        examples = [ex for job in jobs for ex in job.examples]
        try:
            predictions = await asyncio.to_thread(self.run, examples)
        except Exception as exc:
            if len(jobs) > 1:  # one bad request must not fail its batch-mates: each runs alone
                for job in jobs:
                    await self._run([job])
            elif not jobs[0].future.done():  # the worker goes on
                jobs[0].future.set_exception(exc)
            return
        self.batches, self.examples = self.batches + 1, self.examples + len(examples)
        start = 0
        for job in jobs:
            if not job.future.done():  # a caller that went away
                job.future.set_result(predictions[start : start + len(job.examples)])
            start += len(job.examples)
