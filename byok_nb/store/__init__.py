"""Persistence: SQLAlchemy Core tables and engine set-up. No business rules here."""
from .engine import make_engine, read_tx, write_tx
from .migrations import SCHEMA_VERSION, ensure_schema
from .schema import metadata

__all__ = ["SCHEMA_VERSION", "ensure_schema", "make_engine", "metadata", "read_tx", "write_tx"]
