"""SQLAlchemy Core tables. Shapes only: the rules about them live in registry.py / workflows.py."""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

# The schema version lives in store/migrations.py (the last Step): a table or column added here
# after version 1 needs a Step there, or upgraded databases will not get it.

metadata = MetaData()

schema_info = Table(
    "schema_info", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

orgs = Table(
    "orgs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

projects = Table(
    "projects", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("org_id", "name", name="uq_projects_org_name"),
)

members = Table(
    "members", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("user_name", String(256), nullable=False),
    Column("role", String(32), nullable=False),
    # 0 = the whole org (org admins); otherwise the project the role applies to.  A plain integer
    # rather than NULL so the unique constraint below also holds for org-wide rows.
    Column("project_id", Integer, nullable=False, server_default=text("0")),
    UniqueConstraint("org_id", "user_name", "project_id", name="uq_members_scope"),
)

custom_models = Table(
    "custom_models", metadata,
    Column("id", String(32), primary_key=True),  # uuid hex; part of each secret's associated data
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("slug", String(128), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("provider_model_id", String(512), nullable=False),
    Column("display_name", String(512), nullable=False, server_default=""),
    Column("max_tokens", Integer, nullable=False),
    Column("supports_json_mode", Boolean, nullable=False),
    Column("supports_vision", Boolean, nullable=False),
    Column("supports_tool_use", Boolean, nullable=False),
    Column("supports_reasoning", Boolean, nullable=False),
    Column("reasoning_parameter", String(128), nullable=False),
    # Decimal prices as exact text: SQLite has no exact decimal type and floats would drift.
    Column("input_cost_per_token", String(64)),
    Column("output_cost_per_token", String(64)),
    Column("price_source", String(128)),
    Column("base_url", String(2048)),
    Column("endpoint_url", String(2048)),
    Column("aws_region", String(64)),
    Column("auth_method", String(16)),
    Column("aws_access_key_id", String(128)),
    # The one secret of the active auth method: API key / HF token / Bedrock API key / AWS secret.
    Column("secret_ciphertext", LargeBinary),
    Column("secret_key_id", String(32)),
    Column("secret_masked", String(16)),  # computed at write time so listing never decrypts (C-3)
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
)
# M-5: one *active* model per (org, slug), enforced by the database so concurrent adds cannot race.
Index("uq_custom_models_active_slug", custom_models.c.org_id, custom_models.c.slug, unique=True,
      sqlite_where=custom_models.c.active, postgresql_where=custom_models.c.active)
Index("ix_custom_models_org_slug", custom_models.c.org_id, custom_models.c.slug)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(32), nullable=False),
    Column("slug", String(128)),
    Column("model_id", String(32)),
    Column("changes", JSON, nullable=False),
)
Index("ix_audit_log_org_ts", audit_log.c.org_id, audit_log.c.ts)

workflows = Table(
    "workflows", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("org_id", "project_id", "name", name="uq_workflows_project_name"),
)

workflow_fields = Table(
    "workflow_fields", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", Integer, ForeignKey("workflows.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("model_ref", String(512)),  # W-4: the slug or platform id, never a row id
    Column("tools", JSON, nullable=False),
    Column("image_inputs", Boolean, nullable=False),
    Column("structured_output", JSON, nullable=False),
    Column("reasoning_budget", Integer),
    Column("reasoning_effort", String(16)),
    UniqueConstraint("workflow_id", "name", name="uq_workflow_fields_name"),
)
Index("ix_workflow_fields_model_ref", workflow_fields.c.model_ref)


# -- usage (A-1 .. A-3, W-9) ----------------------------------------------------------------------
# One row per generate call, success or failure. Names (project, workflow, field, model) are copied
# as they were at call time, and so are the per-token prices (exact decimal text, NULL = unpriced),
# so editing a model's price later never rewrites past costs. Dimensions a row does not have are
# "" (not NULL) so they can take part in the rollup's unique key.
_BigIntPK = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY = SQLite rowid

usage_log = Table(
    "usage_log", metadata,
    Column("id", _BigIntPK, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("ts_us", BigInteger, nullable=False),         # microseconds since the epoch, UTC
    Column("day", String(10), nullable=False),           # YYYY-MM-DD (UTC) of ts_us
    Column("user_name", String(256), nullable=False, server_default=""),
    Column("project", String(128), nullable=False, server_default=""),
    Column("workflow", String(256), nullable=False, server_default=""),
    Column("field", String(256), nullable=False, server_default=""),
    Column("model", String(512), nullable=False),        # platform id or custom slug (W-4)
    Column("model_type", String(16), nullable=False),    # platform | custom
    Column("provider", String(32), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("latency_ms", Float),
    Column("ok", Boolean, nullable=False),
    Column("input_cost_per_token", String(64)),
    Column("output_cost_per_token", String(64)),
    Column("error", String(128)),                        # error class and status only, never text
    # Provider calls made for this call, retries included (0: refused before any was made).
    Column("attempts", Integer, nullable=False, server_default="1"),
)
Index("ix_usage_log_org_ts", usage_log.c.org_id, usage_log.c.ts_us)

# Maintained in the same transaction as every usage_log insert (analytics.record_usage_batch), so
# cost_report reads a few thousand rows however many calls were made (F-2). Keyed by the prices as
# well: a group's cost is then sum(input_tokens) * price + sum(output_tokens) * price, exact, with
# only integer token sums stored. "" as a price = unpriced (the calls count as untracked).
usage_rollup = Table(
    "usage_rollup", metadata,
    Column("id", _BigIntPK, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("day", String(10), nullable=False),
    Column("user_name", String(256), nullable=False, server_default=""),   # the calling user
    Column("project", String(128), nullable=False),
    Column("workflow", String(256), nullable=False),
    Column("field", String(256), nullable=False),
    Column("model", String(512), nullable=False),
    Column("model_type", String(16), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("input_cost_per_token", String(64), nullable=False),
    Column("output_cost_per_token", String(64), nullable=False),
    Column("calls", BigInteger, nullable=False),
    Column("failed_calls", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    UniqueConstraint("org_id", "day", "user_name", "project", "workflow", "field", "model",
                     "model_type", "provider", "input_cost_per_token", "output_cost_per_token",
                     name="uq_usage_rollup_key"),
)


# -- API tokens (the gateway's bearer tokens) ------------------------------------------------------
# A token acts as its user in its org. Only its SHA-256 is stored (services/api_tokens.py says why
# that is enough); ``prefix`` is the few characters a listing shows so an admin can tell tokens
# apart. A revoked or expired row stays, so its name stays taken and the audit trail readable.
api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("user_name", String(256), nullable=False),
    Column("name", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False),    # hex SHA-256 of the whole token
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    UniqueConstraint("org_id", "name", name="uq_api_tokens_org_name"),
)
# Every gateway request looks its token up by hash.
Index("uq_api_tokens_hash", api_tokens.c.token_hash, unique=True)


# -- Membership marks (team deployment on JupyterHub) ---------------------------------------------
# Facts about a user in an org that outlive their roles: ``removed`` (an admin ended their
# membership, so visiting the hub service must not re-admit them; add_member clears it) and
# ``hub_admin`` (their org_admin role was granted by the hub service's ``admins`` list, so it is
# revoked when the name leaves that list; a role granted by hand carries no mark and stays).
member_marks = Table(
    "member_marks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("user_name", String(256), nullable=False),
    Column("mark", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("org_id", "user_name", "mark", name="uq_member_marks"),
)


# -- the store's generation (store/generation.py) --------------------------------------------------
# One row (id 1): a counter that triggers move on every write to what a call is checked against
# (orgs, members, custom models, API tokens), so a server can keep those in memory and read only
# this per request.
store_generation = Table(
    "store_generation", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
)
