"""The async and sync drivers: they perform a plan's steps and decide nothing.

Each driver walks one plan from :mod:`engine.protocol.plan`, doing what a
step says with its transport and clock and resuming the plan with the
outcome (an :class:`~engine.errors.EngineError` from the transport is an
outcome too, never raised here). The two drivers are line-for-line twins;
``tests/test_drivers.py`` runs every fault scenario through both and compares
events, errors, attempts and waits. A stream driver closes whatever response
is open when the plan moves on (``Open``/``Send``/``Sleep``) or ends, however
it ends: finished, failed, or left by the user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..clock import Clock
from ..errors import EngineError
from ..events import StreamEvent
from ..protocol.plan import Drain, Emit, Fetch, Open, Plan, RawResponse, Read, ReadAll, Send, Sleep
from .transport import SyncOpened, SyncTransport
from .wire import AsyncResponse, AsyncWire

__all__ = ["call_async", "call_sync", "stream_async", "stream_sync"]

Result = Callable[[Any], None]


async def call_async(plan: Plan, transport: AsyncWire, clock: Clock) -> Any:
    """Run a plain-call plan; return its result or raise its error."""
    step = next(plan)
    while True:
        outcome: Any = None
        if isinstance(step, Sleep):
            await clock.asleep(step.seconds)
        elif isinstance(step, Send):
            try:
                outcome = await transport.send(step.prepared, step.target.provider,
                                               step.timeouts)
            except EngineError as error:
                outcome = error
        elif isinstance(step, Fetch):
            outcome = await fetch_async(transport, step)
        else:  # pragma: no cover  # a plain plan yields nothing else
            raise AssertionError(f"unexpected step {step!r}")
        try:
            step = plan.send(outcome)
        except StopIteration as done:
            return done.value


async def fetch_async(transport: AsyncWire, step: Fetch) -> RawResponse | EngineError:
    """Perform a Fetch step: the head and up to ``step.limit`` bytes of the body."""
    try:
        opened = await transport.open(step.prepared, None, step.timeouts)
        try:
            body = await opened.read_all(step.limit)
        finally:
            await opened.aclose()
    except EngineError as error:
        return error
    return RawResponse(opened.head.status, opened.head.headers, body)


def fetch_sync(transport: SyncTransport, step: Fetch) -> RawResponse | EngineError:
    """Perform a Fetch step: the head and up to ``step.limit`` bytes of the body."""
    try:
        opened = transport.open(step.prepared, None, step.timeouts)
        try:
            body = opened.read_all(step.limit)
        finally:
            opened.close()
    except EngineError as error:
        return error
    return RawResponse(opened.head.status, opened.head.headers, body)


def call_sync(plan: Plan, transport: SyncTransport, clock: Clock) -> Any:
    """Run a plain-call plan; return its result or raise its error."""
    step = next(plan)
    while True:
        outcome: Any = None
        if isinstance(step, Sleep):
            clock.sleep(step.seconds)
        elif isinstance(step, Send):
            try:
                outcome = transport.send(step.prepared, step.target.provider,
                                               step.timeouts)
            except EngineError as error:
                outcome = error
        elif isinstance(step, Fetch):
            outcome = fetch_sync(transport, step)
        else:  # pragma: no cover  # a plain plan yields nothing else
            raise AssertionError(f"unexpected step {step!r}")
        try:
            step = plan.send(outcome)
        except StopIteration as done:
            return done.value


async def stream_async(plan: Plan, transport: AsyncWire, clock: Clock,
                       result: Result) -> AsyncIterator[StreamEvent]:
    """Run a stream plan, yielding its events; hand its result to *result* at the end."""
    opened: AsyncResponse | None = None
    try:
        step = next(plan)
        while True:
            outcome: Any = None
            if isinstance(step, Emit):
                for event in step.events:
                    yield event
            elif isinstance(step, Read):
                assert opened is not None
                try:
                    outcome = await opened.read()
                except EngineError as error:
                    outcome = error
            elif isinstance(step, ReadAll):
                assert opened is not None
                try:
                    outcome = await opened.read_all(step.limit)
                except EngineError as error:
                    outcome = error
            elif isinstance(step, Drain):
                assert opened is not None
                await opened.drain(step.max_bytes, step.seconds)
            else:
                if opened is not None:
                    closing, opened = opened, None
                    await closing.aclose()
                if isinstance(step, Sleep):
                    await clock.asleep(step.seconds)
                elif isinstance(step, Fetch):
                    outcome = await fetch_async(transport, step)
                elif isinstance(step, Open):
                    try:
                        opened = await transport.open(step.prepared, step.target.provider,
                                                    step.timeouts)
                        outcome = opened.head
                    except EngineError as error:
                        outcome = error
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                result(done.value)
                return
    finally:
        plan.close()
        if opened is not None:
            await opened.aclose()


def stream_sync(plan: Plan, transport: SyncTransport, clock: Clock,
                result: Result) -> Iterator[StreamEvent]:
    """Run a stream plan, yielding its events; hand its result to *result* at the end."""
    opened: SyncOpened | None = None
    try:
        step = next(plan)
        while True:
            outcome: Any = None
            if isinstance(step, Emit):
                yield from step.events
            elif isinstance(step, Read):
                assert opened is not None
                try:
                    outcome = opened.read()
                except EngineError as error:
                    outcome = error
            elif isinstance(step, ReadAll):
                assert opened is not None
                try:
                    outcome = opened.read_all(step.limit)
                except EngineError as error:
                    outcome = error
            elif isinstance(step, Drain):
                assert opened is not None
                opened.drain(step.max_bytes, step.seconds)
            else:
                if opened is not None:
                    closing, opened = opened, None
                    closing.close()
                if isinstance(step, Sleep):
                    clock.sleep(step.seconds)
                elif isinstance(step, Fetch):
                    outcome = fetch_sync(transport, step)
                elif isinstance(step, Open):
                    try:
                        opened = transport.open(step.prepared, step.target.provider,
                                                    step.timeouts)
                        outcome = opened.head
                    except EngineError as error:
                        outcome = error
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                result(done.value)
                return
    finally:
        plan.close()
        if opened is not None:
            opened.close()
