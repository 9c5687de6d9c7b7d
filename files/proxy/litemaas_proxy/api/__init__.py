"""HTTP routes: ``data`` (OpenAI-compatible data plane) and ``management`` (LiteLLM admin API)."""
