"""The HTTP API (SPEC §10): FastAPI routes under /v1, bearer API keys, structured JSON errors."""
