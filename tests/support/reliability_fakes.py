"""Offline models for the reliability suites: instant, deterministic, report usage."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback


class EchoChat(BaseChatModel):
    """Answers ``echo:<last message>``; usage = words in, 1 out. Async without sleeping.

    ``reply`` replaces the answer message (for malformed-metadata tests).
    """

    reply: Any = None
    provider: Any = "openai"
    llm_output: Any = None

    @property
    def _llm_type(self) -> str:
        return "echo-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(
            ls_provider=self.provider, ls_model_name="echo-1", ls_model_type="chat"
        )

    def _answer(self, messages: list[BaseMessage]) -> AIMessage:
        if self.reply is not None:
            return self.reply  # type: ignore[no-any-return]
        text = str(messages[-1].content)
        words = len(text.split())
        return AIMessage(
            content=f"echo:{text}",
            usage_metadata={"input_tokens": words, "output_tokens": 1, "total_tokens": words + 1},
            response_metadata={"model_name": "echo-1", "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(
            generations=[ChatGeneration(message=self._answer(messages))], llm_output=self.llm_output
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages))])


LLAMA_USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


class MockLLM(CustomLLM):
    """A LlamaIndex LLM answering "forty two" with OpenAI-shaped usage in ``raw``."""

    raw: Any = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="mock-gpt", num_output=16, context_window=4096)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raw = (
            self.raw
            if self.raw is not None
            else {"model": "mock-gpt-0613", "usage": dict(LLAMA_USAGE)}
        )
        return CompletionResponse(text="forty two", raw=raw)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError
