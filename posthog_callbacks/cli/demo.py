"""Offline demo apps for ``posthog-callbacks demo``, traced through our own handlers.

Four small apps with fake models that behave like real ones (model names, token usage,
a little latency): a LangChain RAG chain, a LangGraph tool-calling agent, a LlamaIndex
query engine and a LlamaIndex ReAct agent. Nothing leaves the machine unless the caller
adds a PostHog sink.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exporter import PosthogExporter

__all__ = ["DEMO_APPS", "DemoApp", "DemoResult", "TeeSink", "run_demos"]

log = logging.getLogger(__name__)

DOCS = [
    "PostHog is an open-source product analytics platform with LLM observability.",
    "LLM analytics in PostHog records generations, spans and traces as $ai_* events.",
    "posthog-callbacks turns LangChain and LlamaIndex runs into PostHog traces.",
]
_OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
_STEP_SECONDS = 0.03  # fake model latency, so the waterfall has something to show


@dataclass
class DemoApp:
    """One demo app: a key, a description and the function that runs it."""

    key: str
    title: str
    run: Callable[[PosthogExporter], None]
    extra: str


@dataclass
class DemoResult:
    """What happened when one demo app ran."""

    app: DemoApp
    ok: bool
    seconds: float
    error: str | None = None
    detail: str | None = None
    trace_ids: list[str] = field(default_factory=list)


class TeeSink:
    """Sends every batch to a primary sink and copies it to others.

    Only the primary's failures reach the exporter (and its counters); a copy that fails
    is remembered in :attr:`failures` (sink, events lost, error) so the caller can say so.

    Args:
        primary: The sink that must succeed (e.g. a ``JsonlSink``).
        copies: Best-effort extra sinks (e.g. a ``PosthogSink``).
    """

    def __init__(self, primary: Any, *copies: Any) -> None:
        self.primary = primary
        self.copies = copies
        self.failures: list[tuple[Any, int, str]] = []

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> None:
        """Send ``events`` to every sink; raise only when the primary fails."""
        for sink in self.copies:
            try:
                sink.send(events, deadline)
            except Exception as exc:
                self.failures.append((sink, len(events), f"{type(exc).__name__}: {exc}"))
        self.primary.send(events, deadline)

    def close(self) -> None:
        """Close every sink."""
        for sink in (self.primary, *self.copies):
            sink.close()


# -- LangChain ---------------------------------------------------------------------------


def _lc_usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["input_token_details"] = {"cache_read": cached}
    return usage


def _lc_model(responses: list[Any]) -> Any:
    from langchain_core.language_models import FakeMessagesListChatModel
    from langchain_core.language_models.base import LangSmithParams

    class DemoChatOpenAI(FakeMessagesListChatModel):
        """Replays ``responses`` and tells LangChain it is OpenAI's gpt-4o-mini."""

        def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
            return LangSmithParams(
                ls_provider="openai",
                ls_model_name="gpt-4o-mini",
                ls_model_type="chat",
                ls_temperature=0.0,
            )

        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            time.sleep(_STEP_SECONDS)
            return super()._generate(*args, **kwargs)

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    return DemoChatOpenAI(responses=responses)


def _ai(content: str, usage: dict[str, Any], **kwargs: Any) -> Any:
    from langchain_core.messages import AIMessage

    return AIMessage(
        content=content,
        usage_metadata=usage,  # type: ignore[arg-type]
        response_metadata={
            "model_name": _OPENAI_MODEL,
            "finish_reason": "tool_calls" if kwargs.get("tool_calls") else "stop",
        },
        **kwargs,
    )


def run_langchain_rag(exporter: PosthogExporter) -> None:
    """A LangChain RAG chain: retriever -> prompt -> chat model -> parser."""
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore

    from ..langchain import CallbackHandler

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(page_content=d) for d in DOCS])
    retriever = store.as_retriever(search_kwargs={"k": 2})

    def join(docs: list[Any]) -> str:
        return "\n".join(d.page_content for d in docs)

    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from this context only:\n{context}"),
            ("human", "{question}"),
        ]
    )
    model = _lc_model(
        [
            _ai(
                "posthog-callbacks records LangChain and LlamaIndex runs as "
                "PostHog $ai_* events: traces, spans and generations.",
                _lc_usage(182, 24, cached=128),
            )
        ]
    )
    chain = (
        {"context": retriever | join, "question": RunnablePassthrough()}
        | prompt
        | model
        | StrOutputParser()
    )
    handler = CallbackHandler(exporter, properties={"demo_app": "langchain-rag"})
    chain.invoke(
        "What does posthog-callbacks do?",
        config={
            "callbacks": [handler],
            "run_name": "rag-chain",
            "metadata": {"user_id": "demo-user", "session_id": "demo-session"},
        },
    )


def run_langgraph_agent(exporter: PosthogExporter) -> None:
    """A LangGraph tool-calling agent: agent -> tools -> agent; one of the tools fails."""
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from ..langchain import CallbackHandler

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"Sunny, 22°C in {city}"

    @tool
    def get_air_quality(city: str) -> str:
        """Current air quality in a city."""
        raise TimeoutError(f"air-quality service did not answer for {city} within 2s")

    model = _lc_model(
        [
            _ai(
                "",
                _lc_usage(96, 18),
                tool_calls=[
                    {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_demo_1"},
                    {"name": "get_air_quality", "args": {"city": "Paris"}, "id": "call_demo_2"},
                ],
            ),
            _ai(
                "It is sunny in Paris, 22°C. I could not get the air quality: the service "
                "timed out.",
                _lc_usage(158, 21),
            ),
        ]
    ).bind_tools([get_weather, get_air_quality])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    # handle_tool_errors: the failure goes back to the model as a tool message (and is
    # recorded as a failed tool span), as in a real agent.
    graph.add_node("tools", ToolNode([get_weather, get_air_quality], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    app = graph.compile()
    handler = CallbackHandler(exporter, properties={"demo_app": "langgraph-agent"})
    app.invoke(
        {"messages": [("user", "What's the weather and the air quality in Paris?")]},  # type: ignore[call-overload]
        config={
            "callbacks": [handler],
            "run_name": "weather-agent",
            "metadata": {"user_id": "demo-user", "session_id": "demo-session"},
        },
    )


# -- LlamaIndex --------------------------------------------------------------------------


def _li_llm(replies: list[str], usages: list[tuple[int, int]]) -> Any:
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseAsyncGen,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
    )
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.llms.mock import MockLLM

    class DemoOpenAI(MockLLM):
        """Replays ``replies`` with OpenAI-style ``raw`` usage, like LlamaIndex's OpenAI.

        Every entry point answers directly (none calls another), so one request is one
        model call, as with the real OpenAI class.
        """

        model: str = _OPENAI_MODEL
        replies: list[str] = []
        usages: list[tuple[int, int]] = []
        calls: int = 0

        @classmethod
        def class_name(cls) -> str:
            return "OpenAI"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model, is_chat_model=True)

        def _next(self) -> tuple[str, dict[str, Any]]:
            i = min(self.calls, len(self.replies) - 1)
            self.calls += 1
            time.sleep(_STEP_SECONDS)
            prompt, completion = self.usages[i]
            raw = {
                "id": f"chatcmpl-demo{i}",
                "object": "chat.completion",
                "model": self.model,
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
            return self.replies[i], raw

        def _chunks(self) -> list[ChatResponse]:
            text, raw = self._next()
            words = text.split(" ")
            return [
                ChatResponse(
                    message=ChatMessage(role="assistant", content=" ".join(words[: i + 1])),
                    delta=word if i == 0 else " " + word,
                    raw=raw if i == len(words) - 1 else None,
                )
                for i, word in enumerate(words)
            ]

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            text, raw = self._next()
            return ChatResponse(message=ChatMessage(role="assistant", content=text), raw=raw)

        @llm_chat_callback()
        async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            text, raw = self._next()
            return ChatResponse(message=ChatMessage(role="assistant", content=text), raw=raw)

        @llm_chat_callback()
        def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
            yield from self._chunks()

        @llm_chat_callback()
        async def astream_chat(
            self, messages: Sequence[ChatMessage], **kwargs: Any
        ) -> ChatResponseAsyncGen:
            chunks = self._chunks()

            async def gen() -> ChatResponseAsyncGen:
                for chunk in chunks:
                    yield chunk

            return gen()

        @llm_completion_callback()
        def complete(
            self, prompt: str, formatted: bool = False, **kwargs: Any
        ) -> CompletionResponse:
            text, raw = self._next()
            return CompletionResponse(text=text, raw=raw)

        @llm_completion_callback()
        def stream_complete(
            self, prompt: str, formatted: bool = False, **kwargs: Any
        ) -> CompletionResponseGen:
            for c in self._chunks():
                yield CompletionResponse(text=c.message.content or "", delta=c.delta, raw=c.raw)

    llm = DemoOpenAI(max_tokens=None)  # MockLLM.__init__ takes no extra fields: set them after
    llm.replies = replies
    llm.usages = usages
    return llm


def _li_embedding() -> Any:
    from llama_index.core.embeddings import MockEmbedding

    class DemoOpenAIEmbedding(MockEmbedding):
        """Constant vectors, reported as OpenAI's text-embedding-3-small."""

        @classmethod
        def class_name(cls) -> str:
            return "OpenAIEmbedding"

    return DemoOpenAIEmbedding(embed_dim=16, model_name="text-embedding-3-small")


def run_llama_index_query(exporter: PosthogExporter) -> None:
    """A LlamaIndex query engine: retrieve -> synthesize -> model call."""
    from llama_index.core import Document, VectorStoreIndex

    from ..llama_index import instrument, trace_context

    embed = _li_embedding()
    llm = _li_llm(
        ["posthog-callbacks sends LangChain and LlamaIndex runs to PostHog as $ai_* events."],
        [(214, 19)],
    )
    index = VectorStoreIndex.from_documents([Document(text=d) for d in DOCS], embed_model=embed)
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    handle = instrument(exporter, properties={"demo_app": "llama-index-query"})
    try:
        with trace_context(user_id="demo-user", session_id="demo-session"):
            engine.query("What does posthog-callbacks do?")
    finally:
        handle.uninstrument()


def run_llama_index_agent(exporter: PosthogExporter) -> None:
    """A LlamaIndex ReAct agent (workflow) calling one tool."""
    import asyncio

    from llama_index.core.agent.workflow import ReActAgent
    from llama_index.core.tools import FunctionTool

    from ..llama_index import instrument, trace_context

    def multiply(a: float, b: float) -> float:
        """Multiply two numbers."""
        return a * b

    llm = _li_llm(
        [
            "Thought: I need to multiply the numbers.\nAction: multiply\n"
            'Action Input: {"a": 21, "b": 2}',
            "Thought: I can answer without using any more tools.\nAnswer: 21 times 2 is 42.",
        ],
        [(402, 31), (455, 22)],
    )
    agent = ReActAgent(tools=[FunctionTool.from_defaults(multiply)], llm=llm, name="calculator")
    handle = instrument(exporter, properties={"demo_app": "llama-index-agent"})

    async def main() -> None:
        with trace_context(user_id="demo-user", session_id="demo-session"):
            await agent.run(user_msg="What is 21 times 2?")

    try:
        asyncio.run(main())
    finally:
        handle.uninstrument()


DEMO_APPS: tuple[DemoApp, ...] = (
    DemoApp(
        "langchain-rag",
        "LangChain RAG chain (retriever, prompt, chat model, parser)",
        run_langchain_rag,
        "langchain",
    ),
    DemoApp(
        "langgraph-agent",
        "LangGraph tool-calling agent (agent, two tools, one failing, agent)",
        run_langgraph_agent,
        "langchain",
    ),
    DemoApp(
        "llama-index-query",
        "LlamaIndex query engine (retrieve, synthesize, LLM)",
        run_llama_index_query,
        "llama-index",
    ),
    DemoApp(
        "llama-index-agent",
        "LlamaIndex ReAct agent (workflow with a tool call)",
        run_llama_index_agent,
        "llama-index",
    ),
)


def run_demos(
    exporter: PosthogExporter,
    apps: Sequence[DemoApp] = DEMO_APPS,
    on_result: Callable[[DemoResult], None] | None = None,
) -> list[DemoResult]:
    """Run ``apps`` one after another; a failing app is reported, never fatal.

    Args:
        exporter: Where the handlers record (typically with a ``JsonlSink``).
        apps: The apps to run.
        on_result: Called after each app (for progress output).

    Returns:
        One :class:`DemoResult` per app, in order.
    """
    results = []
    for app in apps:
        started = time.perf_counter()
        try:
            app.run(exporter)
            result = DemoResult(app, True, time.perf_counter() - started)
        except ImportError as exc:
            hint = (
                ""
                if "pip install" in str(exc)
                else (f' (pip install "posthog-callbacks[{app.extra}]")')
            )
            result = DemoResult(app, False, time.perf_counter() - started, error=f"{exc}{hint}")
        except Exception as exc:
            result = DemoResult(
                app,
                False,
                time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}",
                detail=traceback.format_exc(),
            )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
