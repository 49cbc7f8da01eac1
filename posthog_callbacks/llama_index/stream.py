"""Keep a LlamaIndex trace open while the caller reads a returned token stream.

A streaming query returns ``StreamingResponse`` before the model is even called: the
model call starts lazily when the caller iterates ``response_gen``, outside any
dispatcher span or callback trace. Wrapping the generator lets each front door re-enter
its trace for the duration of every ``next()`` (and only then), so the model call lands
in the query's trace, and tells it when the stream ended, failed or was abandoned.
"""

from __future__ import annotations

import types
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from ..spans import OpenSpan
from .trace import describe_error

__all__ = ["StreamDone", "has_stream", "record_stream_end", "wrap_response_stream"]

# (error, completed, text read so far)
StreamDone = Callable[[BaseException | None, bool, str], None]


def has_stream(result: Any) -> bool:
    """Whether ``result`` carries a token stream :func:`wrap_response_stream` can wrap."""
    return isinstance(getattr(result, "response_gen", None), _GENERATORS)


_GENERATORS = (types.GeneratorType, types.AsyncGeneratorType)


def wrap_response_stream(
    result: Any, enter: Callable[[], Any], leave: Callable[[Any], None], done: StreamDone
) -> bool:
    """Replace ``result.response_gen`` by a wrapper; ``False`` if there is no stream."""
    gen = getattr(result, "response_gen", None) if result is not None else None
    if isinstance(gen, types.GeneratorType):
        wrapped: Any = _sync(gen, enter, leave, done)
    elif isinstance(gen, types.AsyncGeneratorType):
        wrapped = _async(gen, enter, leave, done)
    else:
        return False
    try:
        result.response_gen = wrapped
    except Exception:
        return False
    return True


def record_stream_end(root: OpenSpan, err: BaseException | None, complete: bool, text: str) -> None:
    """Note on a trace root how one of its streams ended, and with what text.

    The caller counts the stream as done first, so a failure here never keeps the
    trace open.
    """
    if text and root.output is None:
        root.output = text
    if err is not None:
        root.error = describe_error(err)
    elif not complete:
        root.status = "abandoned"


def _sync(
    gen: Generator[Any, None, None],
    enter: Callable[[], Any],
    leave: Callable[[Any], None],
    done: StreamDone,
) -> Generator[Any, None, None]:
    parts: list[str] = []
    err: BaseException | None = None
    complete = False
    try:
        while True:
            token = enter()
            try:
                item = next(gen)
            except StopIteration:
                complete = True
                return
            finally:
                leave(token)
            if isinstance(item, str):
                parts.append(item)
            yield item
    except GeneratorExit:
        token = enter()
        try:
            gen.close()
        finally:
            leave(token)
        raise
    except BaseException as exc:
        err = exc
        raise
    finally:
        done(err, complete, "".join(parts))


async def _async(
    gen: AsyncGenerator[Any, None],
    enter: Callable[[], Any],
    leave: Callable[[Any], None],
    done: StreamDone,
) -> AsyncGenerator[Any, None]:
    parts: list[str] = []
    err: BaseException | None = None
    complete = False
    try:
        while True:
            token = enter()
            try:
                item = await gen.__anext__()
            except StopAsyncIteration:
                complete = True
                return
            finally:
                leave(token)
            if isinstance(item, str):
                parts.append(item)
            yield item
    except GeneratorExit:
        token = enter()
        try:
            await gen.aclose()
        finally:
            leave(token)
        raise
    except BaseException as exc:
        err = exc
        raise
    finally:
        done(err, complete, "".join(parts))
