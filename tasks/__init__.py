"""Prefect tasks: thin wrappers over the engine's step functions in ``loom.pipeline``.

Each task adds only what the orchestrator owns — retries, caching, artifacts — and passes URIs
and small pydantic models, never frames or audio bytes.
"""
