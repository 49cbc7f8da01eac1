"""LLM observability for LangChain and LlamaIndex in PostHog."""
