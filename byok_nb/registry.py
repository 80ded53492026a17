"""open_registry, Registry (bootstrap: orgs, projects, members) and Session (one acting user).

This is the one place where the product rules of custom models are decided (M-1 … M-17, C-1 …
C-6); workflows.py and analytics.py decide theirs and are reached through Session methods.
"""
from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
import warnings
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .core import model_rules as rules
from .core.domain import (
    CAPABILITY_FLAGS, ROLES, CapabilityProbe, ConnectionTest, CustomModel, DeleteResult, Member,
    ModelDraft, Org, PlatformModel, Project, RotationReport,
)
from .core.clean_errors import clean_failures
from .core.errors import Conflict, Forbidden, InvalidRequest, NotFound, ProviderError, RegistryError
from .core.secrets import SecretBox, UnreadableSecret, looks_masked, mask_secret, scrub, stored_secret_state

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy import Connection, Engine

    from .providers.base import Target

DEFAULT_HOME = "~/.byok_nb"
CONNECTION_TEST_PASSED = "Connection test passed."
PRICE_SOURCE_MAX = 128   # the price_source column width
MAX_TIMEOUT = 86_400     # seconds; a socket timeout beyond ~1e9 s overflows the platform's time_t


class RegistryWarning(UserWarning):
    """Accepted input that is probably a mistake (a per-1M price, an unknown reasoning parameter)."""


def byok_home() -> Path:
    return Path(os.environ.get("BYOK_NB_HOME") or DEFAULT_HOME).expanduser()


def default_database_url() -> str:
    return os.environ.get("BYOK_NB_DATABASE_URL") or f"sqlite:///{byok_home() / 'registry.db'}"


@clean_failures   # the master key is an argument and a local: a failed open must not keep it
def open_registry(url: str | None = None, master_key: str | bytes | None = None,
                  timeout: float = 30.0) -> "Registry":
    """Open (creating on first use) a registry.

    >>> reg = open_registry("sqlite://", master_key=generate_master_key())   # doctest: +SKIP

    With no URL: ``BYOK_NB_DATABASE_URL``, else SQLite at ``$BYOK_NB_HOME/registry.db``
    (``~/.byok_nb``). The master key: the argument, else ``BYOK_NB_MASTER_KEY``, else the key file
    ``$BYOK_NB_HOME/master.key`` — created 0600 only when the store holds no secrets; a store
    with secrets and no key is refused (C-4). A key other than the store's opens it read-only for
    secrets: lists and details work, secrets are unreadable, no secret is written.
    """
    from .store import key_custody
    from .core.secrets import create_key_file, find_master_key, read_key_file
    from .store import ensure_schema, make_engine

    if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_TIMEOUT):   # nan fails the comparison too
        raise InvalidRequest(f"timeout must be a positive number of seconds up to {MAX_TIMEOUT} "
                             f"(one day), got {timeout!r}")
    from .providers.egress import egress_mode_from_env

    egress_mode_from_env()   # P-6: a bad BYOK_NB_EGRESS is refused before anything is opened
    # The embedded default (E-2): no URL here and none in the environment. Only there may a first
    # session create its org (see byok_nb.services.membership).
    embedded_default = url is None and not os.environ.get("BYOK_NB_DATABASE_URL")
    home = byok_home()
    raw_key, source = find_master_key(master_key, home)   # checks the key file; creates nothing
    engine = make_engine(url or default_database_url())
    try:
        ensure_schema(engine)
        if raw_key is None:
            try:
                key_custody.refuse_if_secrets_need_a_key(engine, source)
            except key_custody.MasterKeyMissing:
                # A kernel started at the same moment may have made the key file and stored a
                # secret since we looked: its key is the store's, so use it rather than refuse.
                raw_key = read_key_file(Path(source))
                if raw_key is None:
                    raise
            else:
                raw_key = create_key_file(home)
        box = SecretBox(raw_key)
        key_custody.settle_at_open(engine, box)
    except BaseException:
        engine.dispose()
        raise
    registry = Registry(engine, box, timeout=float(timeout), embedded_default=embedded_default)
    if registry.usage_spool.pending():   # usage rows a busy store could not take last time
        registry.usage_spool.replay_quietly()
    return registry


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _endpoint_note(endpoint_url: str | None) -> str | None:
    if not endpoint_url:
        return None
    from .providers.huggingface import describe_endpoint

    return describe_endpoint(endpoint_url)


class Registry:
    """A registry database plus the master key; hands out :class:`Session` objects."""

    def __init__(self, engine: "Engine", box: SecretBox, *, timeout: float = 30.0,
                 embedded_default: bool = False) -> None:
        self._engine = engine
        self._embedded_default = embedded_default
        self._box = box
        self.timeout = timeout
        # P-6: read (and a bad value refused, listing the valid ones) when the registry is opened.
        from .providers.egress import egress_mode_from_env

        self.egress = egress_mode_from_env()
        self._hub = None
        self._hub_lock = threading.Lock()
        from .store.usage_spool import UsageSpool

        # Where usage rows wait when the store could not take them after a provider answered.
        self.usage_spool = UsageSpool(engine, byok_home())

    def __repr__(self) -> str:
        return f"Registry(url={self._engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the registry's database connections and provider clients (also on ``with`` exit).

        >>> with open_registry() as reg:          # doctest: +SKIP
        ...     reg.create_org("acme")
        """
        if self._hub is not None:
            self._hub.close()
            self._hub = None
        self._engine.dispose()

    @property
    def embedded_default(self) -> bool:
        """True when opened as the embedded default: ``open_registry()`` with no URL while
        ``BYOK_NB_DATABASE_URL`` is unset. Only then does a first session create its org."""
        return self._embedded_default

    @property
    def _provider_hub(self):
        """The provider hub (one pooled HTTP client per registry), built on first use.

        Private: the hub caches provider clients (a Bedrock client holds its credentials), so it
        is reached only from inside the calls that send a request."""
        if self._hub is None:
            with self._hub_lock:
                if self._hub is None:
                    from .providers.hub import ProviderHub

                    self._hub = ProviderHub(timeout=self.timeout, egress=self.egress)
        return self._hub

    # -- bootstrap (no actor) --------------------------------------------------------------------
    def create_org(self, name: str) -> Org:
        """Create an organization; Conflict when the name is taken. Needs no acting user.

        >>> reg.create_org("acme")                 # doctest: +SKIP
        Org(id=1, name='acme')
        """
        from .store import schema, write_tx
        from sqlalchemy.exc import IntegrityError

        name = rules.check_required_text("org name", name, 128)
        try:
            with write_tx(self._engine) as conn:
                org_id = conn.execute(schema.orgs.insert().values(name=name, created_at=_now())).inserted_primary_key[0]
        except IntegrityError:
            raise Conflict(f"org {name!r} already exists") from None
        return Org(id=org_id, name=name)

    def create_project(self, org: str, name: str) -> Project:
        """Create a project in ``org`` (workflows belong to projects); Conflict when it exists.

        >>> reg.create_project("acme", "search")   # doctest: +SKIP
        """
        from .store import schema, write_tx
        from sqlalchemy.exc import IntegrityError

        name = rules.check_required_text("project name", name, 128)
        try:
            with write_tx(self._engine) as conn:
                org_id = self._org_id(conn, org)
                pid = conn.execute(schema.projects.insert().values(
                    org_id=org_id, name=name, created_at=_now())).inserted_primary_key[0]
        except IntegrityError:
            raise Conflict(f"project {name!r} already exists in org {org!r}") from None
        return Project(id=pid, org=org, name=name)

    def add_member(self, org: str, user: str, role: str = "contributor", project: str | None = None) -> Member:
        """Give ``user`` a role: ``org_admin`` for the whole org, or ``project_admin`` /
        ``contributor`` on one project of it.

        >>> reg.add_member("acme", "ana", role="org_admin")                         # doctest: +SKIP
        >>> reg.add_member("acme", "cy", role="contributor", project="search")      # doctest: +SKIP
        """
        from .store import schema, write_tx
        from sqlalchemy.exc import IntegrityError

        user = rules.check_required_text("user", user, 256)
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if role == "org_admin" and project is not None:
            raise InvalidRequest("org_admin applies to the whole org; do not name a project")
        if role != "org_admin" and not project:
            raise InvalidRequest(f"{role} is assigned to a project; name the project")
        try:
            with write_tx(self._engine) as conn:
                org_id = self._org_id(conn, org)
                project_id = self._project_id(conn, org_id, org, project) if project else 0
                conn.execute(schema.members.insert().values(
                    org_id=org_id, user_name=user, role=role, project_id=project_id))
        except IntegrityError:
            raise Conflict(f"{user!r} already has a role on {project or org!r}") from None
        return Member(org=org, user=user, role=role, project=project)

    def remove_member(self, org: str, user: str, project: str | None = None) -> list[Member]:
        """End ``user``'s membership of ``org``: every role they hold there (org admin and every
        project role). With ``project``, only their role on that project. Returns the roles ended.

        Their sessions stop working on their next call. Removing the last org admin is refused
        (``Conflict``): make someone else org admin first. Recorded in the audit log.
        """
        from .services.membership import remove_member

        return remove_member(self._engine, org, user, project=project)

    def members(self, org: str) -> list[Member]:
        """Every role in ``org``: one :class:`Member` per (user, org or project)."""
        from .services.membership import list_members
        from .store import read_tx

        with read_tx(self._engine) as conn:
            return list_members(conn, org)

    def session(self, org: str, user: str) -> "Session":
        """A session acting as ``user`` in ``org``; every call is authorized as that user.

        On the embedded default registry (``open_registry()`` with no URL and no
        ``BYOK_NB_DATABASE_URL``), a store with no org at all is a first run: this creates ``org``
        and makes ``user`` its org admin, atomically — as the admin app does on its first visit.
        Everywhere else an unknown org is ``NotFound`` (create it with ``create_org``) and a user
        without a role gets ``Forbidden`` on each call (add them with ``add_member``).

        >>> s = reg.session(org="acme", user="ana")   # doctest: +SKIP
        """
        from .store import read_tx

        rules.check_storable_text("org", org)
        rules.check_storable_text("user", user)
        try:
            with read_tx(self._engine) as conn:
                org_id = self._org_id(conn, org)
        except NotFound:
            if not self._embedded_default:
                raise
            from .services.membership import claim_first_run

            claim_first_run(self._engine, org, user)
            with read_tx(self._engine) as conn:   # NotFound still, when another org came first
                org_id = self._org_id(conn, org)
        return Session(self, org=org, org_id=org_id, user=user)

    @clean_failures   # the new master key is an argument: a failure must not keep it in a frame
    def rotate_master_key(self, new_key: str | bytes, dry_run: bool = False) -> RotationReport:
        """Re-encrypt every stored secret under ``new_key`` in one transaction; ``dry_run=True``
        only checks that each secret decrypts. Returns a report with the number of secrets.

        >>> reg.rotate_master_key(byok_nb.generate_master_key(), dry_run=True)   # doctest: +SKIP
        """
        from .services.rotation import rotate_master_key

        return rotate_master_key(self, new_key, dry_run=dry_run)

    # -- lookups shared with Session -------------------------------------------------------------
    @staticmethod
    def _org_id(conn: "Connection", org: str) -> int:
        from sqlalchemy import select
        from .store import schema

        if not isinstance(org, str):   # SQLite would match True to an org named "1"
            raise InvalidRequest(f"an org is named by text, not {type(org).__name__}")
        row = conn.execute(select(schema.orgs.c.id).where(schema.orgs.c.name == org)).first()
        if row is None:
            from .services.membership import org_not_found

            raise org_not_found(org)
        return row[0]

    @staticmethod
    def _project_id(conn: "Connection", org_id: int, org: str, project: str) -> int:
        from sqlalchemy import select
        from .store import schema

        if not isinstance(project, str):
            raise InvalidRequest(f"a project is named by text, not {type(project).__name__}")
        row = conn.execute(select(schema.projects.c.id).where(
            schema.projects.c.org_id == org_id, schema.projects.c.name == project)).first()
        if row is None:
            raise NotFound(f"project {project!r} not found in org {org!r}")
        return row[0]


class Session:
    """One user acting in one org. Management calls need ``org_admin``; use is open to members."""

    def __init__(self, registry: Registry, *, org: str, org_id: int, user: str) -> None:
        self._reg = registry
        self.org = org
        self.org_id = org_id
        self.user = user

    def __repr__(self) -> str:
        return f"Session(org={self.org!r}, user={self.user!r})"

    # -- roles (M-1) -----------------------------------------------------------------------------
    def roles(self) -> list[tuple[str, int]]:
        """This user's roles in the org as ``(role, project id)`` pairs (project id 0 = whole org);
        empty when the user is not a member."""
        from sqlalchemy import select
        from .store import read_tx, schema

        m = schema.members
        with read_tx(self._reg._engine) as conn:
            return [tuple(r) for r in conn.execute(select(m.c.role, m.c.project_id).where(
                m.c.org_id == self.org_id, m.c.user_name == self.user))]

    @property
    def is_org_admin(self) -> bool:
        """Whether this user may manage the org's custom models."""
        return any(role == "org_admin" for role, _ in self.roles())

    def _require_member(self) -> None:
        # Read on every call (no cache): a removed member's session stops at their next call.
        if not self.roles():
            from .services.membership import not_a_member

            raise not_a_member(self.org, self.user)

    def _require_admin(self) -> None:
        roles = self.roles()
        if not any(role == "org_admin" for role, _ in roles):
            if not roles:
                from .services.membership import not_a_member

                raise not_a_member(self.org, self.user)
            raise Forbidden(f"managing custom models requires the org_admin role in {self.org!r}")

    # -- reading models --------------------------------------------------------------------------
    def get_model(self, slug: str) -> CustomModel:
        """A saved custom model as a :class:`CustomModel` (secrets masked, exact Decimal prices);
        NotFound once deleted.

        >>> s.get_model("llama-3-1-8b-internal-v4").secret_masked     # doctest: +SKIP
        '****ab12'
        """
        self._require_member()
        return self._to_view(self._active_row(slug))

    def platform_models(self) -> list[PlatformModel]:
        """The curated platform models (routed through OpenRouter) with their capabilities and prices.

        >>> [m.id for m in s.platform_models()][:2]          # doctest: +SKIP
        ['openai/gpt-4o', 'openai/gpt-4o-mini']
        """
        from .catalog import load_platform_models

        self._require_member()
        return list(load_platform_models())

    def list_models(self, type: str = "all", include_inactive: bool = False) -> "pd.DataFrame":
        """Platform and custom models as a DataFrame, one row a model.

        ``type`` is ``"all"``, ``"platform"`` or ``"custom"``. Columns: ``ref`` (platform id or slug),
        ``label``, ``type``, ``provider``, ``provider_model_id``, ``max_tokens``, the four
        ``supports_*`` flags, ``reasoning_parameter``, ``input_cost_per_token`` /
        ``output_cost_per_token`` (USD, NaN when unpriced) each followed by its ``*_per_1m``
        price, ``price_source``, ``secret_masked`` and ``active``.

        >>> s.list_models("custom")[["ref", "provider", "input_cost_per_1m"]]   # doctest: +SKIP
        """
        from .services.listing import rows_frame

        return rows_frame(self.model_rows(type, include_inactive))

    def model_rows(self, type: str = "all", include_inactive: bool = False) -> list[dict]:
        """The rows of :meth:`list_models` as plain dicts (no pandas): the same columns without
        the ``*_per_1m`` ones, prices exact (``Decimal``, None when unpriced).

        >>> [r["ref"] for r in s.model_rows("custom")]                          # doctest: +SKIP
        """
        from .services.listing import model_rows

        self._require_member()
        if type not in ("all", "platform", "custom"):
            raise InvalidRequest(f"type must be 'all', 'platform' or 'custom', got {type!r}")
        platform = self.platform_models() if type in ("all", "platform") else []
        custom = self._custom_views(include_inactive) if type in ("all", "custom") else []
        return model_rows(platform, custom)

    def reuse_sources(self, provider: str, auth_method: str | None = None) -> list[CustomModel]:
        """The org's active models of ``provider`` whose stored credentials a new model may reuse
        (``reuse_credentials_from=<slug>``); for Bedrock, only those of ``auth_method`` when given.

        >>> [m.slug for m in s.reuse_sources("fireworks")]   # doctest: +SKIP
        """
        from sqlalchemy import select
        from .store import read_tx, schema

        self._require_admin()
        rules.check_provider(provider)
        cm = schema.custom_models
        query = select(cm).where(cm.c.org_id == self.org_id, cm.c.provider == provider,
                                 cm.c.active.is_(True), cm.c.secret_ciphertext.is_not(None))
        if provider == "bedrock" and auth_method:
            query = query.where(cm.c.auth_method == rules.check_auth_method(provider, auth_method))
        with read_tx(self._reg._engine) as conn:
            rows = conn.execute(query.order_by(cm.c.slug)).mappings().all()
        return [self._to_view(r) for r in rows]

    def audit_log(self) -> "pd.DataFrame":
        """Every add, edit, test, probe, delete and reactivation of the org's custom models, oldest
        first: ``ts``, ``actor``, ``action``, ``slug``, ``changes`` (secrets only as "rotated").
        Org admins only.

        >>> s.audit_log().tail()            # doctest: +SKIP
        """
        import pandas as pd
        from sqlalchemy import select
        from .store import read_tx, schema

        self._require_admin()
        a = schema.audit_log
        with read_tx(self._reg._engine) as conn:
            rows = conn.execute(select(a.c.ts, a.c.actor, a.c.action, a.c.slug, a.c.changes)
                                .where(a.c.org_id == self.org_id).order_by(a.c.id)).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=["ts", "actor", "action", "slug", "changes"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)   # datetime64 even when empty
        return frame

    # -- managing models -------------------------------------------------------------------------
    @clean_failures
    def add_model(self, draft: Any = None, /, *, test: bool = True, **fields: Any) -> CustomModel:
        """Register a custom model; with ``test=True`` (default) Test Connection runs first and a
        failure raises ProviderError without saving anything. Takes a ModelDraft, a dict or keyword
        fields; the slug is derived from the display name when not given.

        >>> s.add_model(provider="fireworks", api_key="fw_...", display_name="Llama 3.1 8B (internal v4)",
        ...             provider_model_id="accounts/acme/models/x")          # doctest: +SKIP
        """
        self._require_admin()
        d = rules.coerce_draft(draft, fields)
        values, secret, reuse_note = self._validated_draft(d, need_slug=True)
        if test:
            result = self._run_test(self._target_from_values(values, secret), values,
                                    audit_slug=values["slug"])
            if not result.ok:
                raise ProviderError(result.message, status_code=result.status_code or 502,
                                    provider_message=result.message, provider=values["provider"])
            values["input_cost_per_token"] = result.input_cost_per_token
            values["output_cost_per_token"] = result.output_cost_per_token
            values["price_source"] = result.price_source
        for message in self._field_warnings(values):
            warnings.warn(message, RegistryWarning, stacklevel=3)   # past @clean_failures: the caller
        return self._save_new(values, secret, reuse_note)

    @clean_failures
    def test_connection(self, draft: Any = None, /, **overrides: Any) -> ConnectionTest:
        """Run Test Connection: one tiny request to the provider. Takes a draft (ModelDraft, dict or
        keywords) or, given a slug, a saved model with optional overrides (blank credentials = the
        stored ones). Returns a :class:`ConnectionTest` (``ok``, ``message``, latency, tokens and
        suggested prices); a failure is a result, not an exception.

        >>> s.test_connection("llama-3-1-8b-internal-v4").ok     # doctest: +SKIP
        True
        """
        self._require_admin()
        values, secret, slug, model_id, unreadable = self._call_inputs(draft, overrides)
        if unreadable is not None:
            self._audit("test", slug, model_id, {"ok": False, "message": unreadable.message})
            return ConnectionTest(ok=False, message=unreadable.message, status_code=unreadable.status_code)
        return self._run_test(self._target_from_values(values, secret), values,
                              audit_slug=slug, model_id=model_id)

    @clean_failures
    def probe_capabilities(self, model: Any = None, /, **overrides: Any) -> CapabilityProbe:
        """Try JSON mode, tool use, vision and reasoning with tiny requests and *suggest* capability
        flags with the evidence. Takes what ``test_connection`` takes: a slug (with optional edit
        overrides; blank credentials = stored ones), a ModelDraft, a dict or keywords.

        Never changes the model: the result's ``suggested_changes()`` is for a person to
        apply with ``update_model``. Audited as ``probe`` (who used the stored credentials, and
        the suggestions), like a Test Connection. Org admins only.

        >>> s.probe_capabilities("llama-3-1-8b-internal-v4").suggested_changes()   # doctest: +SKIP
        {'supports_vision': False}
        """
        from .providers.capability_probe import not_probed, run_probe

        self._require_admin()
        values, secret, slug, model_id, unreadable = self._call_inputs(model, overrides)
        current = {flag: bool(values[flag]) for flag in CAPABILITY_FLAGS}
        if unreadable is not None:
            result = not_probed(current, unreadable, slug=slug)
        else:
            target = self._target_from_values(values, secret)
            try:
                adapter = self._reg._provider_hub.adapter(target)
            except RegistryError as exc:   # e.g. a HuggingFace URL refused before any request
                result = not_probed(current, exc, secrets=target.secrets(), slug=slug)
            else:
                result = run_probe(adapter, model_id=values["provider_model_id"],
                                   max_tokens=values["max_tokens"],
                                   reasoning_parameter=values["reasoning_parameter"],
                                   current=current, secrets=target.secrets(), slug=slug)
        self._audit("probe", slug, model_id, {"ok": result.ok,
                                              "suggested_changes": result.suggested_changes()})
        return result

    def _call_inputs(self, model: Any, overrides: dict[str, Any]
                     ) -> tuple[dict[str, Any], str | None, str | None, str | None, UnreadableSecret | None]:
        """What a provider call for ``model`` needs: (field values, plaintext secret, slug, row id,
        the UnreadableSecret when the stored secret cannot be decrypted). ``model`` is a saved
        model's slug (``overrides`` patch it; a blank credential keeps the stored one, T-5) or a
        draft (ModelDraft, dict or keywords in ``overrides``)."""
        if isinstance(model, str):
            row = self._active_row(model)
            values, secret, _ = self._patched_values(row, overrides)
            unreadable = None
            if secret is None and not values.get("_remove_secret"):
                try:
                    secret = self._stored_secret(row)
                except UnreadableSecret as exc:
                    unreadable = exc
            return values, secret, row["slug"], row["id"], unreadable
        d = rules.coerce_draft(model, overrides)
        values, secret, _ = self._validated_draft(d, need_slug=False)
        return values, secret, values.get("slug"), None, None

    @clean_failures
    def update_model(self, slug: str, /, **changes: Any) -> CustomModel:
        """Change a custom model: only the named fields change; a blank secret keeps the stored one,
        a new one replaces it. The slug and provider are permanent. ``remove_api_key=True``
        removes an OpenAI-compatible model's optional API key (for an endpoint that needs none).

        >>> s.update_model("llama-3-1-8b-internal-v4", input_cost_per_token="0.0000002")   # doctest: +SKIP
        """
        from .store import schema, write_tx

        self._require_admin()
        with write_tx(self._reg._engine) as conn:
            row = self._active_row(slug, conn, lock=True)
            values, secret, changed = self._patched_values(row, changes)
            if not changed:
                return self._to_view(row)
            update = self._row_values(values)
            update["updated_at"] = _now()
            if secret is None and not values.get("_remove_secret"):
                secret = self._rebound_secret(row, update, conn)
            if secret is not None:
                update.update(self._encrypted(secret, {**row, **update}, conn))
            elif values.get("_remove_secret"):
                update.update(secret_ciphertext=None, secret_key_id=None, secret_masked=None)
            conn.execute(schema.custom_models.update().where(schema.custom_models.c.id == row["id"]).values(**update))
            self._audit("edit", row["slug"], row["id"], changed, conn)
            new_row = self._active_row(slug, conn)
        for message in self._field_warnings(values):
            warnings.warn(message, RegistryWarning, stacklevel=3)   # past @clean_failures: the caller
        return self._to_view(new_row)

    def delete_model(self, slug: str) -> DeleteResult:
        """Delete (deactivate) a custom model; returns how many active workflows still reference it
        (they fail to generate until given another model). Re-adding the slug reactivates it.

        >>> s.delete_model("llama-3-1-8b-internal-v4").referencing_workflows   # doctest: +SKIP
        0
        """
        from .store import schema, write_tx

        self._require_admin()
        with write_tx(self._reg._engine) as conn:
            row = self._active_row(slug, conn, lock=True)
            conn.execute(schema.custom_models.update().where(schema.custom_models.c.id == row["id"])
                         .values(active=False, updated_at=_now()))
            count = self._referencing_workflows(conn, slug)
            self._audit("delete", slug, row["id"], {"referencing_workflows": count}, conn)
        return DeleteResult(slug=slug, referencing_workflows=count)

    def referencing_workflows(self, slug: str) -> int:
        """How many active workflows have a field on ``slug`` (what a delete confirmation shows).

        >>> s.referencing_workflows("llama-3-1-8b-internal-v4")   # doctest: +SKIP
        2
        """
        from .store import read_tx

        self._require_member()
        with read_tx(self._reg._engine) as conn:
            return self._referencing_workflows(conn, slug)

    # -- workflows, generation and analytics live in their own modules --------------------------
    def create_workflow(self, name: str, project: str, fields: Any = ()):
        """Create a workflow in ``project`` with named LLM fields, each saying what it needs of its
        model (tools, image inputs, structured output, reasoning) and optionally its model.

        >>> s.create_workflow("triage", "search", fields=[byok_nb.LLMField("summary", model="openai/gpt-4o")])  # doctest: +SKIP
        """
        from .services import workflows
        return workflows.create_workflow(self, name, project, fields)

    def assign_model(self, workflow: str, field: str, slug: str):
        """Point a workflow's field at a model (platform id or custom slug); InvalidRequest names the
        capability the model lacks for that field.

        >>> s.assign_model("triage", "summary", "llama-3-1-8b-internal-v4")   # doctest: +SKIP
        """
        from .services import workflows
        return workflows.assign_model(self, workflow, field, slug)

    def picker(self, workflow: str, field: str, include_hidden: bool = False):
        """The models a field may use, as ``{"Platform": [...], "Custom": [...]}`` of entries with
        ``label``, ``ref`` and ``why_hidden``; ``include_hidden=True`` adds the models that do not
        qualify, each with the reason. ``.to_frame()`` gives a DataFrame.

        >>> s.picker("triage", "summary").to_frame()        # doctest: +SKIP
        """
        from .services import workflows
        return workflows.picker(self, workflow, field, include_hidden=include_hidden)

    def seed_assignments_csv(self, path_or_file: Any):
        """Assign models to workflow fields from a CSV with columns ``workflow, field, model``
        (optional ``project``): every row is checked first, then all are applied or none; the
        error lists each bad row by its line. Returns the number of assignments.

        >>> s.seed_assignments_csv("assignments.csv")      # doctest: +SKIP
        3
        """
        from .services import workflows
        return workflows.seed_assignments_csv(self, path_or_file)

    @clean_failures
    def generate(self, workflow: str, field: str, messages: Any, **options: Any):
        """Call the model assigned to a workflow field with a prompt string or OpenAI-style message
        dicts, applying the field's tools, structured output, images and reasoning. Returns a
        :class:`Completion` (``text``, ``json``, ``tool_calls``, tokens, latency); every call,
        failed ones too, is recorded for ``usage`` and ``cost_report``.

        >>> s.generate("triage", "summary", "Summarize: ...").text   # doctest: +SKIP
        """
        from .services import generation
        return generation.generate(self, workflow, field, messages, **options)

    def usage(self, since: Any = None, until: Any = None) -> "pd.DataFrame":
        """The org's calls, one row each, oldest first: ``ts``, ``org``, ``project``, ``workflow``,
        ``field``, ``model``, ``model_type``, ``provider``, ``input_tokens``, ``output_tokens``,
        ``latency_ms``, ``ok``, ``cost_usd`` (NaN when the model had no price, 0 when free).
        ``since`` / ``until`` (datetime, ISO text or epoch seconds) keep ``since <= ts < until``.

        >>> s.usage(since="2026-11-01")[["model", "cost_usd"]].groupby("model").sum()   # doctest: +SKIP
        """
        from .services import analytics
        return analytics.usage(self, since=since, until=until)

    def cost_report(self, by: str = "model") -> "pd.DataFrame":
        """Cost grouped by ``model``, ``provider``, ``workflow``, ``field``, ``project`` or ``day``
        (or a list of them): ``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` (float),
        ``untracked_calls`` (calls of unpriced models), ``failed_calls`` and ``cost_usd_exact``
        (the same cost as an exact Decimal).

        >>> s.cost_report(by=["day", "model"])           # doctest: +SKIP
        """
        from .services import analytics
        return analytics.cost_report(self, by=by)

    def estimate_cost(self, ref: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        """The exact USD cost of a call of ``ref`` (platform id or custom slug) at its current
        prices, or None when the model is unpriced (``Decimal("0")`` when it is free).

        >>> s.estimate_cost("openai/gpt-4o", 1_000, 200)   # doctest: +SKIP
        Decimal('0.0045000')
        """
        from .services import analytics
        return analytics.estimate_cost(self, ref, input_tokens, output_tokens)

    def what_if(self, input_tokens: int, output_tokens: int, workflow: str | None = None,
                field: str | None = None) -> "pd.DataFrame":
        """What a token volume would cost on each of the org's models (or only those one workflow
        field may use), cheapest first, unpriced last.

        >>> s.what_if(1_000_000, 250_000)[["ref", "cost_usd"]].head()   # doctest: +SKIP
        """
        from .services import analytics
        return analytics.what_if(self, input_tokens, output_tokens, workflow=workflow, field=field)

    # -- internals: validation -------------------------------------------------------------------
    def _validated_draft(self, d: ModelDraft, *, need_slug: bool = True
                         ) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
        """Field values of a draft after every add rule, the plaintext secret, and reuse info."""
        provider = rules.check_provider(d.provider)
        auth_method = rules.check_auth_method(provider, d.auth_method)
        values: dict[str, Any] = {
            "provider": provider,
            "auth_method": auth_method,
            "provider_model_id": rules.check_required_text("provider_model_id", d.provider_model_id),
            "display_name": (d.display_name or "").strip(),
            "max_tokens": rules.check_max_tokens(d.max_tokens),
            "reasoning_parameter": d.reasoning_parameter if d.reasoning_parameter is not None else "max_tokens",
            "input_cost_per_token": rules.check_cost("input_cost_per_token", d.input_cost_per_token),
            "output_cost_per_token": rules.check_cost("output_cost_per_token", d.output_cost_per_token),
            **{flag: getattr(d, flag) for flag in CAPABILITY_FLAGS},
        }
        try:
            values["slug"] = rules.resolve_slug(d.slug, d.display_name)
        except InvalidRequest:
            if need_slug:
                raise
            values["slug"] = None
        if values["slug"] is not None:
            self._refuse_platform_slug(values["slug"])
        given = {name: getattr(d, name) for name in rules.ALL_CREDENTIAL_FIELDS}
        given["auth_method"] = None  # already checked above; its presence is not a foreign field
        rules.refuse_foreign_credentials(provider, auth_method, given)
        reuse = None
        if d.reuse_credentials_from not in (None, ""):
            reuse = self._reuse_source(d, provider, auth_method)
        secret_field = rules.secret_field_of(provider, auth_method)
        secret = reuse["secret"] if reuse else _plain(getattr(d, secret_field))
        if secret is not None and looks_masked(secret):
            raise InvalidRequest(f"{secret_field}: a masked value (****…) cannot be stored; "
                                 f"enter the real key or leave it blank")
        values.update(
            base_url=(reuse or {}).get("base_url") or d.base_url,
            endpoint_url=d.endpoint_url,
            aws_region=d.aws_region,
            aws_access_key_id=(reuse or {}).get("aws_access_key_id") or d.aws_access_key_id,
        )
        self._check_credentials(values, has_secret=not rules.is_blank(secret))
        if rules.is_blank(secret):
            secret = None
        values["price_source"] = self._typed_price_source(values, d.price_source)
        return values, secret, reuse and {"reused_from": reuse["slug"]}

    @staticmethod
    def _typed_price_source(values: dict[str, Any], given: str | None = None) -> str | None:
        """P-8: the recorded source of the prices — the one a caller names (prices it filled from
        a lookup), else "user" for typed prices; None when the model is unpriced."""
        typed = [values["input_cost_per_token"], values["output_cost_per_token"]]
        if all(c is None for c in typed):
            return None
        if given is None or rules.is_blank(given):
            return "user"
        if not isinstance(given, str):
            raise InvalidRequest("price_source must be text")
        rules.check_storable_text("price_source", given, max_length=PRICE_SOURCE_MAX)
        return given.strip()

    @staticmethod
    def _check_credentials(values: dict[str, Any], *, has_secret: bool) -> None:
        """C-1 presence rules and URL forms for the final field values of a model."""
        provider, auth_method = values["provider"], values["auth_method"]
        _, required = rules.credential_fields(provider, auth_method)
        secret_field = rules.secret_field_of(provider, auth_method)
        for name in sorted(required):
            present = has_secret if name == secret_field else not rules.is_blank(values.get(name))
            if not present:
                label = rules.FIELD_LABELS[name]
                raise InvalidRequest(f"{name} ({label}) is required for "
                                     f"{'Bedrock ' + auth_method if provider == 'bedrock' else provider}")
        if provider == "openai_compatible":
            values["base_url"] = rules.check_base_url(values.get("base_url"))
        if provider == "huggingface":
            values["endpoint_url"] = rules.check_endpoint_url(values.get("endpoint_url"))
        if provider == "bedrock":
            values["aws_region"] = rules.check_region(values.get("aws_region"))
            if auth_method == "iam":
                values["aws_access_key_id"] = values["aws_access_key_id"].strip()

    def _refuse_platform_slug(self, slug: str) -> None:
        from .catalog import platform_model_ids

        if slug in platform_model_ids():
            raise Conflict(f"slug {slug!r} is a platform model id; choose another Model Slug")

    def _reuse_source(self, d: ModelDraft, provider: str, auth_method: str | None) -> dict[str, Any]:
        """C-6: the secret (and access key id / base URL) of another active model of this org."""
        from sqlalchemy import select
        from .store import read_tx, schema

        source_slug = d.reuse_credentials_from
        cm = schema.custom_models
        with read_tx(self._reg._engine) as conn:
            row = conn.execute(select(cm).where(cm.c.org_id == self.org_id, cm.c.slug == source_slug,
                                                cm.c.active.is_(True))).mappings().first()
        if row is None:
            raise InvalidRequest(f"reuse_credentials_from: no active model {source_slug!r} in this org")
        if row["provider"] != provider:
            raise InvalidRequest(f"reuse_credentials_from: {source_slug!r} is a {row['provider']} model, "
                                 f"not {provider}")
        if provider == "bedrock" and row["auth_method"] != auth_method:
            raise InvalidRequest(f"reuse_credentials_from: {source_slug!r} uses Bedrock auth method "
                                 f"{row['auth_method']!r}, not {auth_method!r} (cross-method reuse is rejected)")
        if row["secret_ciphertext"] is None:
            raise InvalidRequest(f"reuse_credentials_from: {source_slug!r} has no stored API key to reuse")
        copied = [rules.secret_field_of(provider, auth_method)]
        if provider == "bedrock" and auth_method == "iam":
            copied.append("aws_access_key_id")
        if provider == "openai_compatible":
            copied.append("base_url")
        doubled = [name for name in copied if not rules.is_blank(getattr(d, name))]
        if doubled:
            raise InvalidRequest(f"reuse_credentials_from copies {', '.join(doubled)}; do not also give "
                                 f"{'it' if len(doubled) == 1 else 'them'}")
        return {"slug": source_slug, "secret": self._decrypt(row),
                "aws_access_key_id": row["aws_access_key_id"] if "aws_access_key_id" in copied else None,
                "base_url": row["base_url"] if "base_url" in copied else None}

    def _patched_values(self, row: Any, changes: dict[str, Any]
                        ) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
        """Apply PATCH ``changes`` to a stored row: (values, new secret or None, audit changes)."""
        if "slug" in changes:
            raise InvalidRequest("slug is permanent after creation; delete the model and re-add it")
        if "provider" in changes and changes["provider"] != row["provider"]:
            raise InvalidRequest("provider is permanent after creation; delete the model and re-add it")
        if "reuse_credentials_from" in changes:
            raise InvalidRequest("reuse_credentials_from is only for adding a model")
        changes = dict(changes)
        remove_key = changes.pop("remove_api_key", False)
        if not isinstance(remove_key, bool):
            raise InvalidRequest(f"remove_api_key must be True or False, not {type(remove_key).__name__}")
        unknown = sorted(set(changes) - set(ModelDraft.model_fields) - {"provider"})
        if unknown:
            raise InvalidRequest("; ".join(f"{name}: unknown field{rules.unknown_field_hint(name)}"
                                           for name in unknown))
        patch = rules.coerce_draft(None, {k: v for k, v in changes.items() if k != "provider"})
        provider = row["provider"]
        values = {name: row[name] for name in (
            "provider", "auth_method", "provider_model_id", "display_name", "max_tokens",
            "reasoning_parameter", "base_url", "endpoint_url", "aws_region", "aws_access_key_id",
            "price_source", *CAPABILITY_FLAGS)}
        values["slug"] = row["slug"]
        values["input_cost_per_token"] = _decimal(row["input_cost_per_token"])
        values["output_cost_per_token"] = _decimal(row["output_cost_per_token"])
        old = dict(values)
        mentioned = set(changes)
        if "auth_method" in mentioned:
            values["auth_method"] = rules.check_auth_method(provider, patch.auth_method)
        switched = values["auth_method"] != old["auth_method"]
        if "provider_model_id" in mentioned:
            values["provider_model_id"] = rules.check_required_text("provider_model_id", patch.provider_model_id)
        if "display_name" in mentioned:
            values["display_name"] = (patch.display_name or "").strip()
        if "max_tokens" in mentioned:
            values["max_tokens"] = rules.check_max_tokens(patch.max_tokens)
        if "reasoning_parameter" in mentioned:
            values["reasoning_parameter"] = patch.reasoning_parameter if patch.reasoning_parameter is not None else "max_tokens"
        for flag in CAPABILITY_FLAGS:
            if flag in mentioned:
                values[flag] = getattr(patch, flag)
        for cost in ("input_cost_per_token", "output_cost_per_token"):
            if cost in mentioned:
                values[cost] = rules.check_cost(cost, getattr(patch, cost))
        if {"input_cost_per_token", "output_cost_per_token", "price_source"} & mentioned:
            values["price_source"] = self._typed_price_source(values, patch.price_source)
        given = {name: getattr(patch, name) for name in rules.ALL_CREDENTIAL_FIELDS if name in mentioned}
        given.pop("auth_method", None)
        rules.refuse_foreign_credentials(provider, values["auth_method"], given)
        if provider == "openai_compatible" and "base_url" in mentioned:
            values["base_url"] = rules.check_base_url(patch.base_url)   # M-15: blank is refused
        for name in ("endpoint_url", "aws_region", "aws_access_key_id"):
            if name in mentioned and not rules.is_blank(getattr(patch, name)):
                values[name] = getattr(patch, name).strip()
        secret_field = rules.secret_field_of(provider, values["auth_method"])
        new_secret = _plain(getattr(patch, secret_field)) if secret_field in mentioned else None
        if new_secret is not None and looks_masked(new_secret):
            raise InvalidRequest(f"{secret_field}: the masked value cannot be stored; enter the real key "
                                 f"or leave it blank to keep the stored one")
        if rules.is_blank(new_secret):
            new_secret = None   # M-14: blank keeps the stored secret
        if remove_key:
            # M-14 (amended): only the one optional secret can be removed; every other is required.
            if provider != "openai_compatible":
                raise InvalidRequest(f"remove_api_key is only for OpenAI-compatible models, whose API Key "
                                     f"is optional; a {provider} model's secret can only be replaced")
            if new_secret is not None:
                raise InvalidRequest("remove_api_key and a new api_key contradict each other; give one")
            values["_remove_secret"] = True
        if switched:
            # M-16: the new method's credentials must come in the same request; the old method's go.
            need = ["aws_access_key_id", "aws_secret_access_key"] if values["auth_method"] == "iam" else ["api_key"]
            missing = [n for n in need if rules.is_blank(getattr(patch, n)) or n not in mentioned]
            if missing:
                raise InvalidRequest(f"switching auth_method to {values['auth_method']!r} needs fresh "
                                     f"{', '.join(missing)} in the same request")
            if values["auth_method"] == "api_key":
                values["aws_access_key_id"] = None
        # A secret cleared by adopt-key still counts as the model's (calls ask to re-enter it).
        has_secret = new_secret is not None or (stored_secret_state(row) != "none" and not switched
                                                and not remove_key)
        self._check_credentials(values, has_secret=has_secret)
        changed: dict[str, Any] = {}
        for name, value in values.items():
            if name.startswith("_") or name == "price_source":
                continue
            if value != old.get(name):
                changed[name] = rules.format_cost(value) if isinstance(value, Decimal) else value
        if new_secret is not None:
            changed[secret_field] = "rotated"
        elif remove_key and row["secret_ciphertext"] is not None:
            changed[secret_field] = "removed"   # M-17: the fact, never the value
        return values, new_secret, changed

    @staticmethod
    def _field_warnings(values: dict[str, Any]) -> list[str]:
        out = rules.cost_warnings(values.get("input_cost_per_token"), values.get("output_cost_per_token"))
        reasoning = rules.reasoning_parameter_warning(values.get("reasoning_parameter"),
                                                      bool(values.get("supports_reasoning")))
        return out + ([reasoning] if reasoning else [])

    # -- internals: persistence ------------------------------------------------------------------
    def _active_row(self, slug: str, conn: "Connection | None" = None, *, lock: bool = False):
        """The active row of ``slug``. ``lock=True`` (inside a write transaction) locks it until
        the commit (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds
        the one write lock), so a concurrent edit or delete is read after it, not before: no lost
        update, and a row deleted meanwhile is NotFound."""
        from sqlalchemy import select
        from .store import read_tx, schema

        if not isinstance(slug, str):
            raise InvalidRequest(f"a model is named by its slug (a string), not {type(slug).__name__}")
        rules.check_storable_text("slug", slug)
        cm = schema.custom_models
        query = select(cm).where(cm.c.org_id == self.org_id, cm.c.slug == slug, cm.c.active.is_(True))
        if lock:
            query = query.with_for_update()
        if conn is None:
            with read_tx(self._reg._engine) as c:
                row = c.execute(query).mappings().first()
        else:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"no active custom model {slug!r} in org {self.org!r}")
        return row

    def _custom_views(self, include_inactive: bool) -> list[CustomModel]:
        from sqlalchemy import select
        from .store import read_tx, schema

        cm = schema.custom_models
        query = select(cm).where(cm.c.org_id == self.org_id)
        if not include_inactive:
            query = query.where(cm.c.active.is_(True))
        with read_tx(self._reg._engine) as conn:
            rows = conn.execute(query.order_by(cm.c.slug)).mappings().all()
        return [self._to_view(r) for r in rows]

    @staticmethod
    def _row_values(values: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in values.items() if not k.startswith("_")}
        for cost in ("input_cost_per_token", "output_cost_per_token"):
            out[cost] = rules.format_cost(out[cost])
        return out

    def _encrypted(self, secret: str, row: Any, conn: "Connection") -> dict[str, Any]:
        """The secret columns of ``row`` (its final values: id, org_id and the bound columns) in
        this write transaction — refused unless this registry's key is the store's current key, so
        no secret is ever written under a rotated-out or wrong key."""
        from .store.key_custody import require_current_key

        box = self._reg._box
        require_current_key(conn, box)
        return {"secret_ciphertext": box.seal_row(secret, row),
                "secret_key_id": box.key_id, "secret_masked": mask_secret(secret)}

    def _decrypt(self, row: Any) -> str:
        return self._reg._box.open_row(row)

    def _stored_secret(self, row: Any) -> str | None:
        """The decrypted secret of a stored row; None when it has none. UnreadableSecret (C-4) when
        it cannot be read: tampered, under another key, or cleared by adopt-key."""
        if stored_secret_state(row) == "none":
            return None
        return self._decrypt(row)

    def _rebound_secret(self, row: Any, update: dict[str, Any], conn: "Connection") -> str | None:
        """The stored secret, when an edit changes a column its associated data covers (base URL,
        endpoint, region, auth method, access key id, provider model id), so it can be encrypted
        again for the new values in the same transaction; None when nothing needs that. A secret
        this key cannot read is left as it was: it stays unreadable (C-4, re-enter it), and an edit
        that puts the columns back makes it readable again."""
        from .store.key_custody import require_current_key
        from .core.secrets import BOUND_COLUMNS

        if row["secret_ciphertext"] is None:
            return None
        if all(update.get(name, row[name]) == row[name] for name in BOUND_COLUMNS):
            return None
        # Under another key this secret could not be re-encrypted: refuse rather than orphan it.
        require_current_key(conn, self._reg._box)
        try:
            return self._decrypt(row)
        except UnreadableSecret:
            return None

    def _save_new(self, values: dict[str, Any], secret: str | None, reuse_note: dict | None) -> CustomModel:
        """Insert, or reactivate an inactive record with the same slug (M-12), atomically."""
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError
        from .store import schema, write_tx

        cm = schema.custom_models
        slug = values["slug"]
        now = _now()
        try:
            with write_tx(self._reg._engine) as conn:
                # FOR UPDATE: concurrent reactivations of one deleted row queue here, and each
                # after the first sees it active (Conflict) — the partial unique index cannot
                # tell them apart, as they update the same row (M-5 on PostgreSQL).
                existing = conn.execute(select(cm.c.id, cm.c.provider, cm.c.active).where(
                    cm.c.org_id == self.org_id, cm.c.slug == slug).order_by(cm.c.active.desc(),
                                                                            cm.c.updated_at.desc())
                                        .with_for_update()).first()
                row_values = self._row_values(values)
                if existing is not None and existing.active:
                    raise Conflict(f"slug {slug!r} is taken by an active custom model in org {self.org!r}")
                if existing is not None:
                    if existing.provider != values["provider"]:
                        raise Conflict(f"slug {slug!r} belongs to a deleted {existing.provider} model; "
                                       f"it can only be reactivated with the same provider")
                    record_id = existing.id
                    bound = {**row_values, "id": record_id, "org_id": self.org_id}
                    secret_cols = (self._encrypted(secret, bound, conn) if secret is not None else
                                   {"secret_ciphertext": None, "secret_key_id": None, "secret_masked": None})
                    conn.execute(cm.update().where(cm.c.id == record_id).values(
                        **row_values, **secret_cols, active=True, updated_at=now))
                    action = "reactivate"
                else:
                    record_id = uuid.uuid4().hex
                    bound = {**row_values, "id": record_id, "org_id": self.org_id}
                    secret_cols = (self._encrypted(secret, bound, conn) if secret is not None else {})
                    conn.execute(cm.insert().values(
                        id=record_id, org_id=self.org_id, **row_values, **secret_cols, active=True,
                        created_at=now, updated_at=now, created_by=self.user))
                    action = "add"
                self._audit(action, slug, record_id, self._audit_fields(values, secret, reuse_note), conn)
                row = conn.execute(select(cm).where(cm.c.id == record_id)).mappings().first()
        except IntegrityError:
            # The partial unique index caught a concurrent add of the same slug (M-5).
            raise Conflict(f"slug {slug!r} is taken by an active custom model in org {self.org!r}") from None
        return self._to_view(row)

    @staticmethod
    def _audit_fields(values: dict[str, Any], secret: str | None, reuse_note: dict | None) -> dict[str, Any]:
        out = {k: (rules.format_cost(v) if isinstance(v, Decimal) else v)
               for k, v in values.items() if not k.startswith("_") and v is not None}
        if secret is not None:
            out[rules.secret_field_of(values["provider"], values["auth_method"])] = "rotated"
        if reuse_note:
            out.update(reuse_note)
        return out

    def _audit(self, action: str, slug: str | None, model_id: str | None, changes: dict[str, Any],
               conn: "Connection | None" = None) -> None:
        from .store import schema, write_tx

        stmt = schema.audit_log.insert().values(org_id=self.org_id, ts=_now(), actor=self.user,
                                                action=action, slug=slug, model_id=model_id,
                                                changes=changes)
        if conn is not None:
            conn.execute(stmt)
        else:
            with write_tx(self._reg._engine) as c:
                c.execute(stmt)

    def _referencing_workflows(self, conn: "Connection", slug: str) -> int:
        from sqlalchemy import func, select
        from .store import schema

        w, f = schema.workflows, schema.workflow_fields
        return conn.execute(select(func.count(func.distinct(w.c.id))).select_from(
            w.join(f, f.c.workflow_id == w.c.id)).where(
            w.c.org_id == self.org_id, w.c.active.is_(True), f.c.model_ref == slug)).scalar_one()

    def _to_view(self, row: Any) -> CustomModel:
        return CustomModel(
            id=row["id"], org=self.org, slug=row["slug"], provider=row["provider"],
            provider_model_id=row["provider_model_id"], display_name=row["display_name"],
            label=row["display_name"] or row["slug"], max_tokens=row["max_tokens"],
            **{flag: bool(row[flag]) for flag in CAPABILITY_FLAGS},
            reasoning_parameter=row["reasoning_parameter"],
            input_cost_per_token=_decimal(row["input_cost_per_token"]),
            output_cost_per_token=_decimal(row["output_cost_per_token"]),
            price_source=row["price_source"], base_url=row["base_url"], endpoint_url=row["endpoint_url"],
            endpoint_note=_endpoint_note(row["endpoint_url"]),
            aws_region=row["aws_region"], auth_method=row["auth_method"],
            aws_access_key_id=row["aws_access_key_id"], secret_masked=row["secret_masked"],
            active=bool(row["active"]), created_at=_aware(row["created_at"]),
            updated_at=_aware(row["updated_at"]), created_by=row["created_by"])

    # -- internals: calling providers ------------------------------------------------------------
    def _target_from_values(self, values: dict[str, Any], secret: str | None) -> "Target":
        from .providers.base import Target

        secret_field = rules.secret_field_of(values["provider"], values["auth_method"])
        wrapped = SecretStr(secret) if secret is not None else None
        return Target(provider=values["provider"], provider_model_id=values["provider_model_id"],
                      api_key=wrapped if secret_field == "api_key" else None,
                      base_url=values.get("base_url"), endpoint_url=values.get("endpoint_url"),
                      aws_region=values.get("aws_region"), auth_method=values.get("auth_method"),
                      aws_access_key_id=values.get("aws_access_key_id"),
                      aws_secret_access_key=wrapped if secret_field == "aws_secret_access_key" else None)

    def _call_target(self, slug: str) -> "tuple[Any, Target]":
        """The stored row and a call target with decrypted credentials, for generation (W-9).

        Private on purpose (C-3): no public name returns plaintext credentials. The one caller
        builds the target inside the call that sends it and drops it when the call returns."""
        row = self._active_row(slug)
        values = {name: row[name] for name in ("provider", "auth_method", "provider_model_id", "base_url",
                                               "endpoint_url", "aws_region", "aws_access_key_id")}
        secret = self._stored_secret(row)
        return row, self._target_from_values(values, secret)

    def _run_test(self, target: "Target", values: dict[str, Any], *, audit_slug: str | None,
                  model_id: str | None = None) -> ConnectionTest:
        """T-1 … T-4: probe the provider, then suggest prices for still-empty cost fields."""
        from .providers.connection_test import probe

        try:
            adapter = self._reg._provider_hub.adapter(target)
            outcome = probe(adapter, model_id=values["provider_model_id"], max_tokens=values["max_tokens"],
                            supports_json_mode=bool(values["supports_json_mode"]))
        except RegistryError as exc:   # e.g. an egress refusal raised before any request
            result = ConnectionTest(ok=False, message=exc.message, status_code=exc.status_code)
        else:
            result = self._priced(outcome, values)
        # The message quotes the provider; it is shown, and stored in the audit log: both get only
        # scrubbed text, whichever path produced it.
        message = scrub(result.message, target.secrets())
        if message != result.message:
            result = result.model_copy(update={"message": message})
        self._audit("test", audit_slug, model_id, {"ok": result.ok, "message": message})
        return result

    @staticmethod
    def _priced(outcome: Any, values: dict[str, Any]) -> ConnectionTest:
        from .providers.pricing import PRICING_WARNING, fill_missing_costs, lookup_price

        input_cost, output_cost = values["input_cost_per_token"], values["output_cost_per_token"]
        source = values.get("price_source")
        warning = None
        if outcome.ok:
            if input_cost is None or output_cost is None:
                suggestion = lookup_price(values["provider"], values["provider_model_id"],
                                          endpoint_url=values.get("endpoint_url"),
                                          base_url=values.get("base_url"))
                input_cost, output_cost, source = fill_missing_costs(input_cost, output_cost, suggestion)
            if input_cost is None or output_cost is None:
                warning = PRICING_WARNING
        return ConnectionTest(
            ok=outcome.ok, message=outcome.message, warning=warning, latency_ms=outcome.latency_ms,
            input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens,
            reply_ok=outcome.reply_ok, request_preview=outcome.request_preview,
            status_code=outcome.status_code, hint=outcome.hint,
            input_cost_per_token=input_cost, output_cost_per_token=output_cost, price_source=source)
