"""planner: memory and KV-cache capacity planning for LLM inference (Gemma 4 first)."""

__version__ = "0.1.0"
