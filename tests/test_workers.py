"""handlers.core.workers: CPU-heavy work on a bounded pool that yields to the event loop."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from handlers.core import workers


def niceness(thread: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")
async def test_cpu_work_runs_below_the_event_loop_s_priority():
    loop_thread = threading.get_native_id()
    worker_thread = await workers.run_cpu(threading.get_native_id)
    helper_thread = (await workers.run_cpu(workers.run_split, [threading.get_native_id] * 2))[1]
    assert niceness(loop_thread) == niceness(os.getpid())  # the loop's own priority is untouched
    assert workers.NICENESS > 0
    assert niceness(worker_thread) == niceness(loop_thread) + workers.NICENESS
    assert niceness(helper_thread) == niceness(loop_thread) + workers.NICENESS


async def test_a_split_job_returns_its_parts_in_order_and_waits_for_all():
    finished = []

    def part(n):
        finished.append(n)
        if n == 0:
            raise ValueError("first part failed")
        return n

    assert await workers.run_cpu(workers.run_split, [lambda n=n: n * 10 for n in range(3)]) == [
        0,
        10,
        20,
    ]
    with pytest.raises(ValueError):
        await workers.run_cpu(workers.run_split, [lambda n=n: part(n) for n in range(3)])
    assert sorted(finished) == [0, 1, 2]  # nothing left running after the error


async def test_an_arriving_job_finding_every_thread_taken_is_refused_not_queued():
    """A slow upload holds its thread while it waits for bytes: the next one is told
    at once (and prepared once it has arrived), never queued behind it."""
    release = threading.Event()
    taken = [workers.run_as_it_arrives(release.wait, 10) for _ in range(workers.ARRIVING_THREADS)]
    assert all(job is not None for job in taken)
    assert workers.run_as_it_arrives(threading.get_native_id) is None
    taken[0].cancel()  # a cancelled job's thread still runs until its function returns
    assert workers.run_as_it_arrives(threading.get_native_id) is None
    release.set()
    await asyncio.gather(*taken[1:])
    for _ in range(100):
        if (job := workers.run_as_it_arrives(threading.get_native_id)) is not None:
            break
        await asyncio.sleep(0.01)
    assert job is not None and await job != threading.get_native_id()
