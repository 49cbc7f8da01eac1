"""Offline chat models for the LangChain handler tests."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, BaseLLM, FakeMessagesListChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    LLMResult,
)


class ProviderFake(FakeMessagesListChatModel):
    """Replays ``responses`` while reporting a real provider and model to LangChain."""

    provider: str = "openai"
    model: str = "gpt-4o-mini"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=self.provider, ls_model_name=self.model, ls_model_type="chat"
        )
        if stop:
            params["ls_stop"] = stop
        return params


class EchoChatModel(BaseChatModel):
    """Answers ``echo:<last message>`` with usage = number of words; yields in async."""

    fail_with: Any = None

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="openai", ls_model_name="echo-1", ls_model_type="chat")

    def _answer(self, messages: list[BaseMessage]) -> AIMessage:
        if self.fail_with is not None:
            raise self.fail_with
        text = str(messages[-1].content)
        return AIMessage(
            content=f"echo:{text}",
            usage_metadata={
                "input_tokens": len(text.split()),
                "output_tokens": 1,
                "total_tokens": len(text.split()) + 1,
            },
            response_metadata={"model_name": "echo-1-served", "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Any:
        answer = self._answer(messages)
        for word in str(answer.content).split(":"):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=answer.usage_metadata,
                response_metadata=answer.response_metadata,
                chunk_position="last",
            )
        )


class CompletionFake(BaseLLM):
    """A text-completion model reporting usage only in ``llm_output`` (OpenAI legacy shape)."""

    @property
    def _llm_type(self) -> str:
        return "completion-fake"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(
            ls_provider="openai", ls_model_name="gpt-3.5-turbo-instruct", ls_model_type="llm"
        )

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        return LLMResult(
            generations=[
                [Generation(text=f"done: {p}", generation_info={"finish_reason": "length"})]
                for p in prompts
            ],
            llm_output={
                "token_usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
                "model_name": "gpt-3.5-turbo-instruct-0914",
            },
        )


class CountingChatModel(BaseChatModel):
    """Ground truth for dedup tests: counts the calls it served and the tokens it reported.

    Each answer reports ``input_tokens`` = words in the last message + 3 and
    ``output_tokens`` = 2 (so sums over calls are distinctive).
    """

    served: dict[str, int] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.served = {"calls": 0, "input_tokens": 0, "output_tokens": 0}

    @property
    def _llm_type(self) -> str:
        return "counting"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="openai", ls_model_name="count-1", ls_model_type="chat")

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        words = len(str(messages[-1].content).split()) + 3
        self.served["calls"] += 1
        self.served["input_tokens"] += words
        self.served["output_tokens"] += 2
        message = AIMessage(
            content="ok",
            usage_metadata={"input_tokens": words, "output_tokens": 2, "total_tokens": words + 2},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._answer(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(0)
        return self._answer(messages)
