"""The counters' write-behind queue (risk.write_behind): the caller does not wait for the write, a reader can wait
for every earlier write, a failing write is logged and the next still runs, a forked worker writes its own."""

from __future__ import annotations

import multiprocessing
import threading

from risk import write_behind as wb


def blocked_writer():
    gate, done = threading.Event(), []

    def write(value, *, tag=""):
        gate.wait(5)
        done.append((value, tag))

    return gate, done, wb.WriteBehind(write, name="test-writer")


def test_the_caller_does_not_wait_and_a_reader_can():
    gate, done, queue = blocked_writer()
    queue.put(1, tag="a")
    queue.put(2, tag="b")
    assert done == [] and queue.wait_idle(timeout=0.05) is False  # the writer is still held
    gate.set()
    assert queue.wait_idle(timeout=5) is True
    assert done == [(1, "a"), (2, "b")]  # in the order handed over


def test_a_failing_write_is_logged_and_the_next_one_runs(caplog):
    done = []

    def write(value):
        if value == "bad":
            raise ConnectionError("redis went away")
        done.append(value)

    queue = wb.WriteBehind(write, name="test-writer")
    queue.put("bad")
    queue.put("good")
    assert queue.wait_idle(timeout=5)
    assert done == ["good"]
    assert "test-writer: a write failed" in caplog.text


def test_writes_beyond_the_cap_are_dropped_not_kept(monkeypatch, caplog):
    monkeypatch.setattr(wb, "MAX_PENDING", 3)
    gate, done, queue = blocked_writer()
    for i in range(10):
        queue.put(i)
    gate.set()
    assert queue.wait_idle(timeout=5)
    assert len(done) <= 4  # one taken by the writer, three pending
    assert "this one is dropped" in caplog.text


def _child_writes(queue: wb.WriteBehind, results) -> None:
    queue.put("from the child")
    results.put(queue.wait_idle(timeout=5))


def test_a_forked_worker_starts_its_own_writer():
    results = []
    queue = wb.WriteBehind(results.append, name="test-writer")
    queue.put("from the parent")
    assert queue.wait_idle(timeout=5) and results == ["from the parent"]
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_child_writes, args=(queue, answers))
    child.start()
    child.join(10)
    assert answers.get(timeout=5) is True  # the child's write was done by a thread of its own
    assert child.exitcode == 0 and results == ["from the parent"]
