"""litemaas_proxy: an OpenAI-compatible gateway with LiteLLM's management API contract."""

__version__ = "0.1.0"
