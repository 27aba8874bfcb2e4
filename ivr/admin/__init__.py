"""Supervisors' side of the engine: the admin HTTP API (h11 over asyncio streams), its
OpenAPI document, the CLI client and the ``monitoring:`` settings."""
