"""The public entry points: :func:`open_registry`, :class:`Registry` (the store and its master key;
orgs, projects and members) and :class:`Session` (one user acting in one org).

Both classes are thin: every rule lives in :mod:`byok_nb.services`, whose functions take the
store, the secret box, the provider hub and the acting user explicitly (a
:class:`~byok_nb.services.context.Context`). The gateway and the CLI call the same functions.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Unpack, overload

from .core.clean_errors import clean_failures
from .core.domain import (
    CapabilityProbe,
    Completion,
    ConnectionTest,
    CustomModel,
    DeleteResult,
    Member,
    Org,
    PickerResult,
    PlatformModel,
    Project,
    RotationReport,
    Workflow,
)
from .core.errors import InvalidRequest, NotFound, RegistryWarning
from .core.inputs import (
    ChatParams,
    CsvSource,
    DraftInput,
    FieldSpec,
    GenerateOptions,
    Messages,
    ModelInput,
    ReportBy,
    TimeBound,
    WorkflowRef,
)
from .core.secrets import SecretBox, create_key_file, find_master_key, read_key_file
from .providers.egress import egress_mode_from_env
from .services import (
    access,
    analytics,
    api_tokens,
    generation,
    membership,
    models,
    rotation,
    workflows,
)
from .services import chat as direct_calls
from .services import model_rules as rules
from .services.chat_stream import AsyncChatStream, ChatStream
from .services.context import Actor, Backend, Context
from .store import ensure_schema, key_custody, make_engine, read_tx
from .store.usage_spool import UsageSpool

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy.engine import Engine

    from .providers.base import Target
    from .providers.hub import ProviderHub

__all__ = ["Registry", "RegistryWarning", "Session", "byok_home", "default_database_url", "open_registry"]

DEFAULT_HOME = "~/.byok_nb"
MAX_TIMEOUT = 86_400     # seconds; a socket timeout beyond ~1e9 s overflows the platform's time_t


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
    with secrets and no key is refused. A key other than the store's opens it read-only for
    secrets: lists and details work, secrets are unreadable, no secret is written.
    """
    if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_TIMEOUT):   # nan fails the comparison too
        raise InvalidRequest(f"timeout must be a positive number of seconds up to {MAX_TIMEOUT} "
                             f"(one day), got {timeout!r}")
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
    backend = Backend(engine, box, timeout=float(timeout), egress=egress_mode_from_env(), home=home)
    if backend.spool.pending():   # usage rows a busy store could not take last time
        backend.spool.replay_quietly()
    return Registry(backend, embedded_default=embedded_default)


class Registry:
    """A registry database plus the master key; hands out :class:`Session` objects."""

    def __init__(self, backend: Backend, *, embedded_default: bool = False) -> None:
        self._backend = backend
        self._embedded_default = embedded_default

    @property
    def _engine(self) -> "Engine":
        return self._backend.engine

    @property
    def timeout(self) -> float:
        """Seconds allowed for each provider call."""
        return self._backend.timeout

    @property
    def egress(self) -> str:
        """Where provider calls may go: ``private`` (default), ``public`` or ``default``."""
        return self._backend.egress

    @property
    def usage_spool(self) -> UsageSpool:
        """Where usage rows wait when the store could not take them after a provider answered."""
        return self._backend.spool

    @property
    def _provider_hub(self) -> "ProviderHub":
        # Private: the hub caches provider clients (a Bedrock client holds its credentials).
        return self._backend.providers

    def __repr__(self) -> str:
        return f"Registry(url={self._engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the registry's database connections and provider clients (also on ``with`` exit).

        >>> with open_registry() as reg:          # doctest: +SKIP
        ...     reg.create_org("acme")
        """
        self._backend.close()

    @property
    def embedded_default(self) -> bool:
        """True when opened as the embedded default: ``open_registry()`` with no URL while
        ``BYOK_NB_DATABASE_URL`` is unset. Only then does a first session create its org."""
        return self._embedded_default

    # -- bootstrap (no actor) --------------------------------------------------------------------
    def create_org(self, name: str) -> Org:
        """Create an organization; Conflict when the name is taken. Needs no acting user.

        >>> reg.create_org("acme")                 # doctest: +SKIP
        Org(id=1, name='acme')
        """
        return membership.create_org(self._engine, name)

    def create_project(self, org: str, name: str) -> Project:
        """Create a project in ``org`` (workflows belong to projects); Conflict when it exists.

        >>> reg.create_project("acme", "search")   # doctest: +SKIP
        """
        return membership.create_project(self._engine, org, name)

    def add_member(self, org: str, user: str, role: str = "contributor", project: str | None = None) -> Member:
        """Give ``user`` a role: ``org_admin`` for the whole org, or ``project_admin`` /
        ``contributor`` on one project of it.

        >>> reg.add_member("acme", "ana", role="org_admin")                         # doctest: +SKIP
        >>> reg.add_member("acme", "cy", role="contributor", project="search")      # doctest: +SKIP
        """
        return membership.add_member(self._engine, org, user, role=role, project=project)

    def remove_member(self, org: str, user: str, project: str | None = None) -> list[Member]:
        """End ``user``'s membership of ``org``: every role they hold there (org admin and every
        project role). With ``project``, only their role on that project. Returns the roles ended.

        Their sessions stop working on their next call. Removing the last org admin is refused
        (``Conflict``): make someone else org admin first. Recorded in the audit log.
        """
        return membership.remove_member(self._engine, org, user, project=project)

    def members(self, org: str) -> list[Member]:
        """Every role in ``org``: one :class:`Member` per (user, org or project)."""
        with read_tx(self._engine) as conn:
            return membership.list_members(conn, org)

    def session(self, org: str, user: str) -> "Session":
        """A session acting as ``user`` in ``org``; every call is authorized as that user.

        On the embedded default registry (``open_registry()`` with no URL and no
        ``BYOK_NB_DATABASE_URL``), a store with no org at all is a first run: this creates ``org``
        and makes ``user`` its org admin, atomically — as the admin app does on its first visit.
        Everywhere else an unknown org is ``NotFound`` (create it with ``create_org``) and a user
        without a role gets ``Forbidden`` on each call (add them with ``add_member``).

        >>> s = reg.session(org="acme", user="ana")   # doctest: +SKIP
        """
        return Session(Context(self._backend, self._actor(org, user)), registry=self)

    def _actor(self, org: str, user: str) -> Actor:
        rules.check_storable_text("org", org)
        rules.check_storable_text("user", user)
        try:
            with read_tx(self._engine) as conn:
                org_id = membership.find_org_id(conn, org)
        except NotFound:
            if not self._embedded_default:
                raise
            membership.claim_first_run(self._engine, org, user)
            with read_tx(self._engine) as conn:   # NotFound still, when another org came first
                org_id = membership.find_org_id(conn, org)
        return Actor(org=org, org_id=org_id, user=user)

    @clean_failures   # the new master key is an argument: a failure must not keep it in a frame
    def rotate_master_key(self, new_key: str | bytes, dry_run: bool = False) -> RotationReport:
        """Re-encrypt every stored secret under ``new_key`` in one transaction; ``dry_run=True``
        only checks that each secret decrypts. Returns a report with the number of secrets.

        >>> reg.rotate_master_key(byok_nb.generate_master_key(), dry_run=True)   # doctest: +SKIP
        """
        return rotation.rotate_master_key(self._backend, new_key, dry_run=dry_run)


class Session:
    """One user acting in one org. Management calls need ``org_admin``; use is open to members.

    Every method is a thin call into :mod:`byok_nb.services` with this session's context.
    """

    def __init__(self, ctx: Context, *, registry: Registry | None = None) -> None:
        self._ctx = ctx
        self._reg = registry

    @property
    def org(self) -> str:
        """The org this session acts in."""
        return self._ctx.org

    @property
    def org_id(self) -> int:
        """The store's id of this session's org."""
        return self._ctx.org_id

    @property
    def user(self) -> str:
        """The user this session acts as."""
        return self._ctx.user

    def __repr__(self) -> str:
        return f"Session(org={self.org!r}, user={self.user!r})"

    def _call_target(self, slug: str) -> "tuple[Any, Target]":
        # Private on purpose: no public name returns plaintext credentials.
        return models.call_target(self._ctx, slug)

    # -- roles -----------------------------------------------------------------------------------
    def roles(self) -> list[tuple[str, int]]:
        """This user's roles in the org as ``(role, project id)`` pairs (project id 0 = whole org);
        empty when the user is not a member."""
        return access.roles(self._ctx)

    @property
    def is_org_admin(self) -> bool:
        """Whether this user may manage the org's custom models."""
        return access.is_org_admin(self._ctx)

    # -- models ----------------------------------------------------------------------------------
    def get_model(self, slug: str) -> CustomModel:
        """A saved custom model as a :class:`CustomModel` (secrets masked, exact Decimal prices);
        NotFound once deleted.

        >>> s.get_model("llama-3-1-8b-internal-v4").secret_masked     # doctest: +SKIP
        '****ab12'
        """
        return models.get_model(self._ctx, slug)

    def platform_models(self) -> list[PlatformModel]:
        """The curated platform models (routed through OpenRouter) with their capabilities and prices.

        >>> [m.id for m in s.platform_models()][:2]          # doctest: +SKIP
        ['openai/gpt-4o', 'openai/gpt-4o-mini']
        """
        return models.platform_models(self._ctx)

    def list_models(self, type: str = "all", include_inactive: bool = False) -> "pd.DataFrame":
        """Platform and custom models as a DataFrame, one row a model.

        ``type`` is ``"all"``, ``"platform"`` or ``"custom"``. Columns: ``ref`` (platform id or slug),
        ``label``, ``type``, ``provider``, ``provider_model_id``, ``max_tokens``, the four
        ``supports_*`` flags, ``reasoning_parameter``, ``input_cost_per_token`` /
        ``output_cost_per_token`` (USD, NaN when unpriced) each followed by its ``*_per_1m``
        price, ``price_source``, ``secret_masked`` and ``active``.

        >>> s.list_models("custom")[["ref", "provider", "input_cost_per_1m"]]   # doctest: +SKIP
        """
        return models.list_models(self._ctx, type, include_inactive)

    def model_rows(self, type: str = "all", include_inactive: bool = False) -> list[dict[str, Any]]:
        """The rows of :meth:`list_models` as plain dicts (no pandas): the same columns without
        the ``*_per_1m`` ones, prices exact (``Decimal``, None when unpriced).

        >>> [r["ref"] for r in s.model_rows("custom")]                          # doctest: +SKIP
        """
        return models.model_rows(self._ctx, type, include_inactive)

    def reuse_sources(self, provider: str, auth_method: str | None = None) -> list[CustomModel]:
        """The org's active models of ``provider`` whose stored credentials a new model may reuse
        (``reuse_credentials_from=<slug>``); for Bedrock, only those of ``auth_method`` when given.

        >>> [m.slug for m in s.reuse_sources("fireworks")]   # doctest: +SKIP
        """
        return models.reuse_sources(self._ctx, provider, auth_method)

    def audit_log(self) -> "pd.DataFrame":
        """Every add, edit, test, probe, delete and reactivation of the org's custom models, oldest
        first: ``ts``, ``actor``, ``action``, ``slug``, ``changes`` (secrets only as "rotated").
        Org admins only.

        >>> s.audit_log().tail()            # doctest: +SKIP
        """
        return models.audit_log(self._ctx)

    @clean_failures
    def add_model(self, draft: DraftInput | None = None, /, *, test: bool = True, **fields: Any) -> CustomModel:
        """Register a custom model; with ``test=True`` (default) Test Connection runs first and a
        failure raises ProviderError without saving anything. Takes a ModelDraft, a dict or keyword
        fields; the slug is derived from the display name when not given.

        >>> s.add_model(provider="fireworks", api_key="fw_...", display_name="Llama 3.1 8B (internal v4)",
        ...             provider_model_id="accounts/acme/models/x")          # doctest: +SKIP
        """
        return models.add_model(self._ctx, draft, test=test, **fields)

    @clean_failures
    def test_connection(self, draft: ModelInput | None = None, /, **overrides: Any) -> ConnectionTest:
        """Run Test Connection: one tiny request to the provider. Takes a draft (ModelDraft, dict or
        keywords) or, given a slug, a saved model with optional overrides (blank credentials = the
        stored ones). Returns a :class:`ConnectionTest` (``ok``, ``message``, latency, tokens and
        suggested prices); a failure is a result, not an exception.

        >>> s.test_connection("llama-3-1-8b-internal-v4").ok     # doctest: +SKIP
        True
        """
        return models.test_connection(self._ctx, draft, **overrides)

    @clean_failures
    def probe_capabilities(self, model: ModelInput | None = None, /, **overrides: Any) -> CapabilityProbe:
        """Try JSON mode, tool use, vision and reasoning with tiny requests and *suggest* capability
        flags with the evidence. Takes what ``test_connection`` takes: a slug (with optional edit
        overrides; blank credentials = stored ones), a ModelDraft, a dict or keywords.

        Never changes the model: the result's ``suggested_changes()`` is for a person to
        apply with ``update_model``. Audited as ``probe`` (who used the stored credentials, and
        the suggestions), like a Test Connection. Org admins only.

        >>> s.probe_capabilities("llama-3-1-8b-internal-v4").suggested_changes()   # doctest: +SKIP
        {'supports_vision': False}
        """
        return models.probe_capabilities(self._ctx, model, **overrides)

    @clean_failures
    def update_model(self, slug: str, /, **changes: Any) -> CustomModel:
        """Change a custom model: only the named fields change; a blank secret keeps the stored one,
        a new one replaces it. The slug and provider are permanent. ``remove_api_key=True``
        removes an OpenAI-compatible model's optional API key (for an endpoint that needs none).

        >>> s.update_model("llama-3-1-8b-internal-v4", input_cost_per_token="0.0000002")   # doctest: +SKIP
        """
        return models.update_model(self._ctx, slug, **changes)

    def delete_model(self, slug: str) -> DeleteResult:
        """Delete (deactivate) a custom model; returns how many active workflows still reference it
        (they fail to generate until given another model). Re-adding the slug reactivates it.

        >>> s.delete_model("llama-3-1-8b-internal-v4").referencing_workflows   # doctest: +SKIP
        0
        """
        return models.delete_model(self._ctx, slug)

    def referencing_workflows(self, slug: str) -> int:
        """How many active workflows have a field on ``slug`` (what a delete confirmation shows).

        >>> s.referencing_workflows("llama-3-1-8b-internal-v4")   # doctest: +SKIP
        2
        """
        return models.referencing_workflows(self._ctx, slug)

    def list_workflows(self, project: str | None = None) -> list[Workflow]:
        """The org's workflows (or one project's), by project then name, each with its fields.

        >>> [w.name for w in s.list_workflows("search")]     # doctest: +SKIP
        """
        return workflows.list_workflows(self._ctx, project)

    def get_workflow(self, workflow: WorkflowRef) -> Workflow:
        """One workflow with its fields, named by its name (unique in the org), "project/name",
        its id or a :class:`Workflow`.

        >>> s.get_workflow("triage").fields                  # doctest: +SKIP
        """
        return workflows.get_workflow(self._ctx, workflow)

    def create_workflow(self, name: str, project: str, fields: Iterable[FieldSpec] = ()) -> Workflow:
        """Create a workflow in ``project`` with named LLM fields, each saying what it needs of its
        model (tools, image inputs, structured output, reasoning) and optionally its model.

        >>> s.create_workflow("triage", "search", fields=[byok_nb.LLMField("summary", model="openai/gpt-4o")])  # doctest: +SKIP
        """
        return workflows.create_workflow(self._ctx, name, project, fields)

    def assign_model(self, workflow: WorkflowRef, field: str, slug: str) -> Workflow:
        """Point a workflow's field at a model (platform id or custom slug); InvalidRequest names the
        capability the model lacks for that field.

        >>> s.assign_model("triage", "summary", "llama-3-1-8b-internal-v4")   # doctest: +SKIP
        """
        return workflows.assign_model(self._ctx, workflow, field, slug)

    def picker(self, workflow: WorkflowRef, field: str, include_hidden: bool = False) -> PickerResult:
        """The models a field may use, as ``{"Platform": [...], "Custom": [...]}`` of entries with
        ``label``, ``ref`` and ``why_hidden``; ``include_hidden=True`` adds the models that do not
        qualify, each with the reason. ``.to_frame()`` gives a DataFrame.

        >>> s.picker("triage", "summary").to_frame()        # doctest: +SKIP
        """
        return workflows.picker(self._ctx, workflow, field, include_hidden=include_hidden)

    def seed_assignments_csv(self, path_or_file: CsvSource) -> int:
        """Assign models to workflow fields from a CSV with columns ``workflow, field, model``
        (optional ``project``): every row is checked first, then all are applied or none; the
        error lists each bad row by its line. Returns the number of assignments.

        >>> s.seed_assignments_csv("assignments.csv")      # doctest: +SKIP
        3
        """
        return workflows.seed_assignments_csv(self._ctx, path_or_file)

    @clean_failures
    def generate(self, workflow: WorkflowRef, field: str, messages: Messages,
                 **options: Unpack[GenerateOptions]) -> Completion:
        """Call the model assigned to a workflow field with a prompt string or OpenAI-style message
        dicts, applying the field's tools, structured output, images and reasoning. Returns a
        :class:`Completion` (``text``, ``json``, ``tool_calls``, tokens, latency); every call,
        failed ones too, is recorded for ``usage`` and ``cost_report``.

        >>> s.generate("triage", "summary", "Summarize: ...").text   # doctest: +SKIP
        """
        return generation.generate(self._ctx, workflow, field, messages, **options)

    @overload
    def chat(self, model: str, messages: Messages, *, stream: Literal[False] = False, max_retries: int = 2,
             timeout: float | None = None, **params: Unpack[ChatParams]) -> Completion: ...

    @overload
    def chat(self, model: str, messages: Messages, *, stream: Literal[True], max_retries: int = 2,
             timeout: float | None = None, **params: Unpack[ChatParams]) -> ChatStream: ...

    @clean_failures
    def chat(self, model: str, messages: Messages, *, stream: bool = False, max_retries: int = 2,
             timeout: float | None = None, **params: Unpack[ChatParams]) -> "Completion | ChatStream":
        """Call a model directly: ``model`` is a custom model's slug or a platform model's id (the
        ``ref`` of ``list_models``), ``messages`` a prompt string or OpenAI-style message dicts.

        ``params`` are the OpenAI chat parameters — ``temperature``, ``top_p``, ``max_tokens``
        (default and upper limit: the model's Max Tokens), ``stop``, ``seed``, ``response_format``
        (``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {...}}``),
        ``tools``, ``tool_choice`` and ``reasoning`` (``{"max_tokens": N}`` or ``{"effort":
        "low" | "medium" | "high"}``) — translated for the model's provider; one the provider or
        the model cannot take is refused with ``InvalidRequest`` naming it.

        Connection failures, 429 and 5xx answers are retried up to ``max_retries`` times, honouring
        ``Retry-After``, all within ``timeout`` seconds (default: the registry's timeout). Returns a
        :class:`Completion` (``text``, ``json``, ``tool_calls``, tokens, ``cost_usd``,
        ``latency_ms``, ``request_id``, ``reasoning``, ``attempts``); with ``stream=True`` a
        :class:`ChatStream` of chunks (``.delta``, ``.tool_calls``, and ``.usage`` on the last).
        Every call is recorded for ``usage`` and ``cost_report`` as this session's user.

        >>> s.chat("ft-llama", "Which team owns this ticket?", temperature=0).text   # doctest: +SKIP
        >>> for chunk in s.chat("openai/gpt-4o", "Tell me a story", stream=True):   # doctest: +SKIP
        ...     print(chunk.delta, end="")
        """
        return direct_calls.chat(self._ctx, model, messages, stream=stream, max_retries=max_retries,
                                 timeout=timeout, **params)

    @overload
    async def achat(self, model: str, messages: Messages, *, stream: Literal[False] = False,
                    max_retries: int = 2, timeout: float | None = None,
                    **params: Unpack[ChatParams]) -> Completion: ...

    @overload
    async def achat(self, model: str, messages: Messages, *, stream: Literal[True], max_retries: int = 2,
                    timeout: float | None = None, **params: Unpack[ChatParams]) -> AsyncChatStream: ...

    @clean_failures
    async def achat(self, model: str, messages: Messages, *, stream: bool = False, max_retries: int = 2,
                    timeout: float | None = None,
                    **params: Unpack[ChatParams]) -> "Completion | AsyncChatStream":
        """:meth:`chat` without blocking the event loop: ``await s.achat(...)`` returns a
        :class:`Completion`, or with ``stream=True`` an :class:`AsyncChatStream` to ``async for``.
        Many calls can run at once (``asyncio.gather``).

        >>> await asyncio.gather(*(s.achat("ft-llama", q) for q in questions))   # doctest: +SKIP
        """
        return await direct_calls.achat(self._ctx, model, messages, stream=stream,
                                        max_retries=max_retries, timeout=timeout, **params)

    def usage(self, since: TimeBound | None = None, until: TimeBound | None = None) -> "pd.DataFrame":
        """The org's calls, one row each, oldest first: ``ts``, ``org``, ``user`` (who called),
        ``project``, ``workflow``, ``field`` (empty for direct ``chat`` calls), ``model``,
        ``model_type``, ``provider``, ``input_tokens``, ``output_tokens``, ``latency_ms``, ``ok``,
        ``attempts`` (retries included), ``cost_usd`` (NaN when the model had no price, 0 when free).
        ``since`` / ``until`` (datetime, ISO text or epoch seconds) keep ``since <= ts < until``.

        >>> s.usage(since="2026-11-01")[["model", "cost_usd"]].groupby("model").sum()   # doctest: +SKIP
        """
        return analytics.usage(self._ctx, since=since, until=until)

    def cost_report(self, by: ReportBy = "model") -> "pd.DataFrame":
        """Cost grouped by ``model``, ``provider``, ``workflow``, ``field``, ``project``, ``day`` or
        ``user`` (or a list of them): ``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` (float),
        ``untracked_calls`` (calls of unpriced models), ``failed_calls`` and ``cost_usd_exact``
        (the same cost as an exact Decimal).

        >>> s.cost_report(by=["day", "model"])           # doctest: +SKIP
        """
        return analytics.cost_report(self._ctx, by=by)

    def estimate_cost(self, ref: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        """The exact USD cost of a call of ``ref`` (platform id or custom slug) at its current
        prices, or None when the model is unpriced (``Decimal("0")`` when it is free).

        >>> s.estimate_cost("openai/gpt-4o", 1_000, 200)   # doctest: +SKIP
        Decimal('0.0045000')
        """
        return analytics.estimate_cost(self._ctx, ref, input_tokens, output_tokens)

    def what_if(self, input_tokens: int, output_tokens: int, workflow: WorkflowRef | None = None,
                field: str | None = None) -> "pd.DataFrame":
        """What a token volume would cost on each of the org's models (or only those one workflow
        field may use), cheapest first, unpriced last.

        >>> s.what_if(1_000_000, 250_000)[["ref", "cost_usd"]].head()   # doctest: +SKIP
        """
        return analytics.what_if(self._ctx, input_tokens, output_tokens, workflow=workflow, field=field)

    # -- API tokens of the gateway -----------------------------------------------------------------
    def create_api_token(self, user: str, name: str, expires_in_days: int | None = None) -> str:
        """A new API token acting as ``user`` (a member of this org), named ``name`` (unique in
        the org), valid for ``expires_in_days`` or until revoked. Shown only this once: only a hash
        is stored. Org admins only.

        >>> token = s.create_api_token("ana", "laptop", expires_in_days=90)   # doctest: +SKIP
        """
        return api_tokens.create(self._ctx.engine, self.org_id, self.org, self.user, user, name, expires_in_days)

    def api_tokens(self) -> "pd.DataFrame":
        """The org's API tokens, oldest first: ``name``, ``user``, ``prefix`` (the first characters,
        to tell them apart), ``created_at``, ``created_by``, ``expires_at``, ``revoked_at``,
        ``last_used_at``, ``active``. No secret: tokens are not stored. Org admins only."""
        return api_tokens.tokens_frame(api_tokens.list_tokens(self._ctx.engine, self.org_id, self.org, self.user))

    def revoke_api_token(self, name: str) -> bool:
        """Revoke the token ``name``: refused from its next request on. False when it already
        was. Org admins only."""
        return api_tokens.revoke(self._ctx.engine, self.org_id, self.org, self.user, name)
