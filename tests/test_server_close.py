"""HttpServer.close() ends the answers still being made: none is left pending when the loop
stops (which would print "Task was destroyed but it is pending!" at a node's SIGTERM)."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from gossip.http.server import HttpServer, Request, Response


def test_close_waits_for_the_cancelled_answers(caplog: pytest.LogCaptureFixture) -> None:
    answering: list[asyncio.Task[object]] = []

    async def handler(body: bytes) -> bytes:
        return body

    async def slow_app(request: Request) -> Response:
        task = asyncio.current_task()
        assert task is not None
        answering.append(task)
        await asyncio.sleep(3600)  # an answer that is still being made at close
        return Response(200, b"{}")

    async def scenario() -> None:
        server = HttpServer(handler, slow_app)
        host, port = await server.start(("127.0.0.1", 0))
        readers = []
        for _ in range(3):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            writer.write(b"GET /v1/node HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            readers.append((reader, writer))
        for _ in range(100):  # bounded: until the three answers are under way
            if len(answering) == 3:
                break
            await asyncio.sleep(0.02)
        assert len(answering) == 3
        await asyncio.wait_for(server.close(), 10)
        assert all(task.done() for task in answering)
        for _, writer in readers:
            writer.close()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert "Task was destroyed" not in caplog.text


def test_a_stopped_loop_thread_unwinds_its_pending_tasks(caplog: pytest.LogCaptureFixture) -> None:
    from gossip.http.client import LoopThread

    unwound: list[str] = []

    async def pending_forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            unwound.append("finally ran")

    thread = LoopThread()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        started = thread.run(_start(pending_forever()), timeout=5)
        thread.stop()
        gc.collect()
    assert started.done() and started.cancelled() and unwound == ["finally ran"]
    assert thread.loop.is_closed() and "Task was destroyed" not in caplog.text


async def _start(coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
    task = asyncio.get_running_loop().create_task(coro)
    await asyncio.sleep(0)  # let it reach its await
    return task
