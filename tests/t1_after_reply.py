"""after_reply.AfterReply: work a request leaves for after its reply runs when the task
that queued it yields, before any other task takes a step."""

from __future__ import annotations

import trio
import trio.testing

from memfs.after_reply import AfterReply


def test_work_left_for_after_the_reply_runs_before_any_other_task(checklogs):
    """A second task woken in the same step as the work is queued (as another request or
    the committer could be) must find it done when it first runs; a failing piece is
    logged and the rest still runs."""
    checklogs.expect("bookkeeping after a reply failed", 1)
    seen = []

    async def main():
        after = AfterReply()
        after.start()
        woken = trio.Event()
        done = []

        async def other():
            await woken.wait()
            seen.append(list(done))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await trio.testing.wait_all_tasks_blocked()
            woken.set()  # `other` may run from the next step on
            after.later(done.append, 1)
            after.later(lambda: 1 / 0)
            after.later(done.append, 2)
            assert done == []  # not yet: this task's step goes on
            await trio.lowlevel.checkpoint()
        after.stop()

    trio.run(main)
    assert seen == [[1, 2]]


def test_not_started_it_runs_work_at_once():
    after = AfterReply()
    done = []
    after.later(done.append, 1)
    assert done == [1]
