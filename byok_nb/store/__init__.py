"""Persistence: SQLAlchemy Core tables and engine set-up. No business rules here."""
from .engine import ensure_schema, make_engine, read_tx, write_tx
from .schema import SCHEMA_VERSION, metadata

__all__ = ["SCHEMA_VERSION", "ensure_schema", "make_engine", "metadata", "read_tx", "write_tx"]
