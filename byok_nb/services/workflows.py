"""Workflows, their LLM fields, the model picker and model assignments.

A workflow belongs to a project and has named LLM fields. A field declares what it needs of its
model and holds one model reference: a platform id or a custom slug, stored as that string,
never a row id, so deleting and re-adding a model keeps workflows pointing at it and
``Session.delete_model`` can count the active workflows that reference a slug.

Who may do what (decided here):

* **read** (``picker``, ``get_workflow``, ``list_workflows``, ``generate``): every member of the org;
* **edit** (``create_workflow``, ``assign_model``, ``seed_assignments_csv``): org admins, and the
  project admins and contributors assigned to the workflow's project — contributors build
  workflows, so they may wire models into them; a member of another project may not;
* a user with no membership in the org gets ``Forbidden`` for everything, before any look-up, so
  nothing about the org's projects or workflows leaks to them.

A workflow is named by its :class:`~byok_nb.core.domain.Workflow` object, its id, its name (when that
is unique in the org) or ``"project/name"``.

>>> s.create_workflow("triage", "search", fields=[LLMField("classify", tools=[...])])  # doctest: +SKIP
>>> s.picker("triage", "classify")                       # doctest: +SKIP
{'Platform': [PickerEntry(label='OpenAI: GPT-4o', ref='openai/gpt-4o', ...)], 'Custom': [...]}
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from ..catalog import get_platform_model, load_platform_models
from ..core.domain import LLMField, PickerEntry, PickerResult, Workflow
from ..core.errors import Conflict, Forbidden, InvalidRequest, NotFound, RegistryError
from ..core.suggest import LLM_FIELD_ALIASES, did_you_mean
from ..store import read_tx, schema, write_tx
from . import access
from .context import Context
from .membership import find_project_id, not_a_member

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection


__all__ = [
    "CAPABILITY_LABELS", "ModelInfo", "assign_model", "create_workflow", "field_needs", "get_workflow",
    "list_workflows", "lookup_model", "missing_capabilities", "picker", "seed_assignments_csv",
]

EDIT_ROLES = ("project_admin", "contributor")
CAPABILITY_LABELS = {
    "supports_tool_use": "Supports tool use",
    "supports_vision": "Supports vision / image inputs",
    "supports_json_mode": "Supports JSON mode",
    "supports_reasoning": "Supports extended reasoning",
}
FIELD_COLUMNS = ("workflow", "field", "model")


# -- models as a field sees them -------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """What a workflow needs to know about a model reference, platform or custom alike."""

    ref: str
    type: str                      # "platform" | "custom"
    provider: str                  # "openrouter" for platform models
    label: str
    active: bool
    max_tokens: int
    supports_json_mode: bool
    supports_vision: bool
    supports_tool_use: bool
    supports_reasoning: bool
    reasoning_parameter: str
    input_cost_per_token: Decimal | None
    output_cost_per_token: Decimal | None

    @property
    def priced(self) -> bool:
        return self.input_cost_per_token is not None and self.output_cost_per_token is not None


def _platform_info(m: Any) -> ModelInfo:
    return ModelInfo(ref=m.id, type="platform", provider="openrouter", label=m.name or m.id, active=True,
                     max_tokens=m.max_tokens, supports_json_mode=m.supports_json_mode,
                     supports_vision=m.supports_vision, supports_tool_use=m.supports_tool_use,
                     supports_reasoning=m.supports_reasoning, reasoning_parameter=m.reasoning_parameter,
                     input_cost_per_token=m.input_cost_per_token,
                     output_cost_per_token=m.output_cost_per_token)


def _custom_info(row: Any) -> ModelInfo:
    price_in, price_out = row["input_cost_per_token"], row["output_cost_per_token"]
    return ModelInfo(ref=row["slug"], type="custom", provider=row["provider"],
                     label=row["display_name"] or row["slug"], active=bool(row["active"]),
                     max_tokens=row["max_tokens"], supports_json_mode=bool(row["supports_json_mode"]),
                     supports_vision=bool(row["supports_vision"]),
                     supports_tool_use=bool(row["supports_tool_use"]),
                     supports_reasoning=bool(row["supports_reasoning"]),
                     reasoning_parameter=row["reasoning_parameter"],
                     input_cost_per_token=None if price_in is None else Decimal(price_in),
                     output_cost_per_token=None if price_out is None else Decimal(price_out))


_CUSTOM_INFO_COLUMNS = ("slug", "provider", "display_name", "active", "max_tokens", "supports_json_mode",
                        "supports_vision", "supports_tool_use", "supports_reasoning",
                        "reasoning_parameter", "input_cost_per_token", "output_cost_per_token")


def lookup_model(ctx: Context, ref: str, conn: "Connection | None" = None) -> ModelInfo | None:
    """The model a reference names in this org, or None when it names nothing.

    An *active* custom slug of the org wins, then a platform id; failing both, the most recent
    *inactive* custom model with that slug is returned with ``active=False`` (a deleted model).
    """
    if not isinstance(ref, str) or not ref.strip():
        return None
    view = ctx.view
    if conn is None and view is not None:
        return view.get(("model", ctx.org_id, ref), lambda: _read_model(ctx, ref, None))
    return _read_model(ctx, ref, conn)


def _read_model(ctx: Context, ref: str, conn: "Connection | None") -> ModelInfo | None:
    cm = schema.custom_models
    query = (select(*(cm.c[name] for name in _CUSTOM_INFO_COLUMNS))
             .where(cm.c.org_id == ctx.org_id, cm.c.slug == ref)
             .order_by(cm.c.active.desc(), cm.c.updated_at.desc()).limit(1))
    if conn is None:
        with read_tx(ctx.engine) as c:
            row = c.execute(query).mappings().first()
    else:
        row = conn.execute(query).mappings().first()
    if row is not None and row["active"]:
        return _custom_info(row)
    platform = _get_platform(ref, get_platform_model)
    if platform is not None:
        return _platform_info(platform)
    return _custom_info(row) if row is not None else None


def model_refs(ctx: Context) -> list[str]:
    """Every reference a call in this org may name: its active custom slugs and the platform
    ids (for a did-you-mean when a reference names nothing; read only on that error path)."""
    cm = schema.custom_models
    with read_tx(ctx.engine) as conn:
        slugs = conn.execute(select(cm.c.slug).where(cm.c.org_id == ctx.org_id, cm.c.active)).scalars().all()
    return [*slugs, *(m.id for m in load_platform_models())]


def _get_platform(ref: str, getter: Any) -> Any:
    try:
        return getter(ref)
    except (KeyError, LookupError, NotFound):
        return None


def _active_models(ctx: Context, conn: "Connection") -> tuple[list[ModelInfo], list[ModelInfo]]:
    """(platform, custom) models a picker may list: the catalogue and the org's active models."""
    cm = schema.custom_models
    rows = conn.execute(select(*(cm.c[name] for name in _CUSTOM_INFO_COLUMNS))
                        .where(cm.c.org_id == ctx.org_id, cm.c.active.is_(True))
                        .order_by(cm.c.slug)).mappings().all()
    return [_platform_info(m) for m in load_platform_models()], [_custom_info(r) for r in rows]


# -- what a field needs (W-1, W-5) -----------------------------------------------------------------
def field_needs(field: LLMField) -> list[tuple[str, str]]:
    """The capability flags a field needs, each with the reason, in a fixed order."""
    needs = []
    if field.tools:
        needs.append(("supports_tool_use", "the field has tool bindings"))
    if field.image_inputs:
        needs.append(("supports_vision", "the field takes image inputs"))
    if field.structured_output is not False and field.structured_output is not None:
        needs.append(("supports_json_mode", "the field uses structured output"))
    if field.reasoning_budget is not None or field.reasoning_effort is not None:
        needs.append(("supports_reasoning", "the field sets a reasoning "
                                            + ("budget" if field.reasoning_budget is not None else "effort")))
    return needs


def missing_capabilities(field: LLMField, model: ModelInfo) -> list[tuple[str, str]]:
    """The needs of ``field`` that ``model`` does not meet: [(flag, reason)]."""
    return [(flag, why) for flag, why in field_needs(field) if not getattr(model, flag)]


def why_hidden(field: LLMField, model: ModelInfo) -> str | None:
    """``needs Supports tool use (the field has tool bindings)``; None when the model qualifies."""
    missing = missing_capabilities(field, model)
    if not missing:
        return None
    return "; ".join(f"needs {CAPABILITY_LABELS[flag]} ({why})" for flag, why in missing)


def check_model_for_field(field: LLMField, model: ModelInfo | None, ref: str, org: str) -> ModelInfo:
    """The model a field may be assigned, or the error saying why not."""
    if model is None:
        raise NotFound(f"no model {ref!r} in org {org!r}: it is neither a platform model id nor the slug "
                       f"of a custom model")
    if not model.active:
        raise InvalidRequest(f"custom model {ref!r} is deleted (inactive); re-add it to reactivate it, "
                             f"or assign another model")
    missing = missing_capabilities(field, model)
    if missing:
        flags = ", ".join(f"{flag} ({CAPABILITY_LABELS[flag]}: {why})" for flag, why in missing)
        raise InvalidRequest(f"model {ref!r} cannot serve field {field.name!r}: it lacks {flags}")
    return model


# -- fields as given and as stored -----------------------------------------------------------------
def _coerce_field(value: Any, position: int) -> LLMField:
    if isinstance(value, LLMField):
        # Validated again: an LLMField's attributes can be assigned anything after it was built.
        value = {name: getattr(value, name) for name in LLMField.model_fields if hasattr(value, name)}
    if isinstance(value, Mapping):
        try:
            field = LLMField(**dict(value))
        except ValidationError as exc:
            raise _invalid(f"fields[{position}]", exc) from None
        except TypeError as exc:
            raise InvalidRequest(f"fields[{position}]: {exc}") from None
    else:
        raise InvalidRequest(f"fields[{position}] must be an LLMField or a dict, not {type(value).__name__}")
    name = (field.name or "").strip()
    if not name:
        raise InvalidRequest(f"fields[{position}]: a field needs a name")
    if len(name) > 256:
        raise InvalidRequest(f"field {name[:40]!r}...: a field name is at most 256 characters")
    for i, tool in enumerate(field.tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(function, Mapping)
                or not isinstance(function.get("name"), str) or not function["name"]):
            raise InvalidRequest(f"field {name!r}: tools[{i}] must be an OpenAI function tool "
                                 f"{{'type': 'function', 'function': {{'name': ..., 'parameters': {{...}}}}}}")
    if field.structured_output is not False and not (field.structured_output is True
                                                     or isinstance(field.structured_output, dict)):
        raise InvalidRequest(f"field {name!r}: structured_output is True or a JSON schema dict")
    budget = field.reasoning_budget
    if budget is not None and (isinstance(budget, bool) or budget < 1):
        raise InvalidRequest(f"field {name!r}: reasoning_budget must be a whole number of tokens >= 1")
    if budget is not None and field.reasoning_effort is not None:
        raise InvalidRequest(f"field {name!r}: give reasoning_budget or reasoning_effort, not both")
    return field.model_copy(update={"name": name}) if name != field.name else field


def _invalid(where: str, exc: ValidationError) -> InvalidRequest:
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in error.get("loc", ())) or "input"
        if error.get("type") == "extra_forbidden" and error.get("loc"):
            hint = did_you_mean(str(error["loc"][-1]), LLMField.model_fields, LLM_FIELD_ALIASES)
            parts.append(f"{loc}: unknown field{hint}")
            continue
        parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    return InvalidRequest(f"{where}: " + "; ".join(parts))


def _field_from_row(row: Any) -> LLMField:
    return LLMField(name=row["name"], model=row["model_ref"], tools=tuple(row["tools"] or ()),
                    image_inputs=bool(row["image_inputs"]),
                    structured_output=row["structured_output"] if row["structured_output"] is not None else False,
                    reasoning_budget=row["reasoning_budget"], reasoning_effort=row["reasoning_effort"])


# -- access ----------------------------------------------------------------------------------------
def _roles(ctx: Context) -> list[tuple[str, int]]:
    """The actor's roles; Forbidden when they have none in this org."""
    roles = access.roles(ctx)
    if not roles:
        raise not_a_member(ctx.org, ctx.user)
    return roles


def _may_edit(roles: list[tuple[str, int]], project_id: int) -> bool:
    return any(role == "org_admin" or (role in EDIT_ROLES and pid == project_id) for role, pid in roles)


def _edit_forbidden(ctx: Context, project: str) -> Forbidden:
    return Forbidden(f"{ctx.user!r} may not change workflows of project {project!r}: that needs "
                     f"org_admin, or project_admin / contributor on {project!r}")


# -- workflow look-ups -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _WorkflowRow:
    id: int
    name: str
    project_id: int
    project: str
    active: bool


def _workflow_query(ctx: Context):
    w, p = schema.workflows, schema.projects
    return (select(w.c.id, w.c.name, w.c.project_id, p.c.name.label("project"), w.c.active)
            .select_from(w.join(p, p.c.id == w.c.project_id)).where(w.c.org_id == ctx.org_id))


def _find_workflow(ctx: Context, conn: "Connection", workflow: Any,
                   project: str | None = None) -> _WorkflowRow:
    """The org's workflow named by a Workflow, an id, a name (unique in the org) or "project/name"."""
    w, p = schema.workflows, schema.projects
    query = _workflow_query(ctx)
    if isinstance(workflow, Workflow):
        rows = conn.execute(query.where(w.c.id == workflow.id)).all()
        label = workflow.name
    elif isinstance(workflow, int) and not isinstance(workflow, bool):
        rows = conn.execute(query.where(w.c.id == workflow)).all()
        label = str(workflow)
    elif isinstance(workflow, str) and workflow.strip():
        label = workflow.strip()

        def named(name: str, in_project: str | None) -> list[Any]:
            found = query.where(w.c.name == name)
            if in_project:
                found = found.where(p.c.name == in_project)
            return conn.execute(found).all()

        return _choose_workflow(ctx, label, project, named)
    else:
        raise InvalidRequest("a workflow is named by its Workflow object, id, name or 'project/name'")
    return _one_workflow(ctx, label, project, rows)


def _choose_workflow(ctx: Context, label: str, project: str | None, named: Any) -> _WorkflowRow:
    """The workflow a name (or "project/name") picks; ``named(name, project)`` lists candidates."""
    rows = named(label, project)
    if not rows and "/" in label and not project:
        proj, _, name = label.partition("/")
        rows = named(name, proj)
    return _one_workflow(ctx, label, project, rows)


def _one_workflow(ctx: Context, label: str, project: str | None, rows: list[Any]) -> _WorkflowRow:
    if not rows:
        where = f" in project {project!r}" if project else ""
        raise NotFound(f"no workflow {label!r}{where} in org {ctx.org!r}")
    if len(rows) > 1:
        projects = ", ".join(sorted(r.project for r in rows))
        raise InvalidRequest(f"workflow {label!r} exists in several projects ({projects}); name it as "
                             f"'project/{label}' or pass the Workflow object")
    r = rows[0]
    return _WorkflowRow(id=r.id, name=r.name, project_id=r.project_id, project=r.project, active=bool(r.active))


def _field_rows(conn: "Connection", workflow_id: int) -> list[Any]:
    f = schema.workflow_fields
    return conn.execute(select(f).where(f.c.workflow_id == workflow_id).order_by(f.c.id)).mappings().all()


def _field_row(conn: "Connection", wf: _WorkflowRow, field: str) -> Any:
    if isinstance(field, LLMField):
        field = field.name
    if not isinstance(field, str) or not field.strip():
        raise InvalidRequest("a field is named by its name (a string)")
    f = schema.workflow_fields
    row = conn.execute(select(f).where(f.c.workflow_id == wf.id, f.c.name == field.strip())).mappings().first()
    if row is None:
        raise NotFound(f"workflow {wf.name!r} has no field {field!r}")
    return row


def _to_workflow(ctx: Context, conn: "Connection", wf: _WorkflowRow) -> Workflow:
    return Workflow(id=wf.id, org=ctx.org, project=wf.project, name=wf.name, active=wf.active,
                    fields=tuple(_field_from_row(r) for r in _field_rows(conn, wf.id)))


def resolve_field(ctx: Context, conn: "Connection", workflow: Any, field: Any
                  ) -> tuple[_WorkflowRow, LLMField]:
    """(workflow, field) for generation and pickers; the caller has checked membership."""
    wf = _find_workflow(ctx, conn, workflow)
    return wf, _field_from_row(_field_row(conn, wf, field))


# -- public API ------------------------------------------------------------------------------------
def create_workflow(ctx: Context, name: str, project: str, fields: Iterable[Any] = ()) -> Workflow:
    """Create a workflow in ``project`` with LLM fields (LLMField objects or dicts).

    A field's ``model``, when given, is checked like :func:`assign_model`. Org admins and the
    project's admins and contributors may create workflows; a duplicate name in the project is
    ``Conflict``.
    """
    roles = _roles(ctx)
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("workflow name is required")
    name = name.strip()
    if len(name) > 256:
        raise InvalidRequest("a workflow name is at most 256 characters")
    if not isinstance(project, str) or not project.strip():
        raise InvalidRequest("project is required")
    project = project.strip()
    if fields is None:
        fields = ()
    if isinstance(fields, (str, bytes, Mapping, LLMField)) or not isinstance(fields, Iterable):
        raise InvalidRequest("fields is a list of LLMField objects or dicts")
    coerced = [_coerce_field(f, i) for i, f in enumerate(fields)]
    seen: set[str] = set()
    for f in coerced:
        if f.name in seen:
            raise InvalidRequest(f"field {f.name!r} is declared twice; field names are unique in a workflow")
        seen.add(f.name)
    try:
        with write_tx(ctx.engine) as conn:
            project_id = find_project_id(conn, ctx.org_id, ctx.org, project)
            if not _may_edit(roles, project_id):
                raise _edit_forbidden(ctx, project)
            for f in coerced:
                if f.model is not None:
                    check_model_for_field(f, lookup_model(ctx, f.model, conn), f.model, ctx.org)
            wid = conn.execute(schema.workflows.insert().values(
                org_id=ctx.org_id, project_id=project_id, name=name, active=True,
                created_at=dt.datetime.now(dt.timezone.utc))).inserted_primary_key[0]
            if coerced:
                conn.execute(schema.workflow_fields.insert(), [_field_values(wid, f) for f in coerced])
            wf = _WorkflowRow(id=wid, name=name, project_id=project_id, project=project, active=True)
            return _to_workflow(ctx, conn, wf)
    except IntegrityError:
        raise Conflict(f"project {project!r} already has a workflow {name!r}") from None


def _field_values(workflow_id: int, f: LLMField) -> dict[str, Any]:
    return {"workflow_id": workflow_id, "name": f.name, "model_ref": f.model, "tools": [dict(t) for t in f.tools],
            "image_inputs": bool(f.image_inputs), "structured_output": f.structured_output,
            "reasoning_budget": f.reasoning_budget, "reasoning_effort": f.reasoning_effort}


def get_workflow(ctx: Context, workflow: Any) -> Workflow:
    """A workflow with its fields (any member of the org)."""
    _roles(ctx)
    with read_tx(ctx.engine) as conn:
        return _to_workflow(ctx, conn, _find_workflow(ctx, conn, workflow))


def list_workflows(ctx: Context, project: str | None = None) -> list[Workflow]:
    """The org's workflows (optionally one project's), by project then name (any member)."""
    _roles(ctx)
    with read_tx(ctx.engine) as conn:
        query = _workflow_query(ctx)
        if project is not None:
            find_project_id(conn, ctx.org_id, ctx.org, project)
            query = query.where(schema.projects.c.name == project)
        rows = conn.execute(query.order_by(schema.projects.c.name, schema.workflows.c.name)).all()
        return [_to_workflow(ctx, conn, _WorkflowRow(id=r.id, name=r.name, project_id=r.project_id,
                                                         project=r.project, active=bool(r.active)))
                for r in rows]


def assign_model(ctx: Context, workflow: Any, field: str, ref: str) -> Workflow:
    """Point ``field`` of ``workflow`` at a platform id or custom slug.

    The model must be active and have every capability the field needs, else ``InvalidRequest``
    naming the missing flag(s); an unknown reference is ``NotFound``. The reference string itself
    is stored. Returns the updated workflow.
    """
    roles = _roles(ctx)
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidRequest("model is a platform model id or a custom model slug")
    ref = ref.strip()
    with write_tx(ctx.engine) as conn:
        wf = _find_workflow(ctx, conn, workflow)
        if not _may_edit(roles, wf.project_id):
            raise _edit_forbidden(ctx, wf.project)
        row = _field_row(conn, wf, field)
        check_model_for_field(_field_from_row(row), lookup_model(ctx, ref, conn), ref, ctx.org)
        f = schema.workflow_fields
        conn.execute(f.update().where(f.c.id == row["id"]).values(model_ref=ref))
        return _to_workflow(ctx, conn, wf)


def picker(ctx: Context, workflow: Any, field: str, include_hidden: bool = False
           ) -> PickerResult:
    """The models a field may use, grouped ``{"Platform": [...], "Custom": [...]}``.

    Only active models whose flags meet the field's needs are listed, labelled by display name (or
    the slug when that is blank). ``include_hidden=True`` adds the models that do not qualify,
    each with ``why_hidden`` (e.g. ``needs Supports tool use (the field has tool bindings)``), so a
    UI can explain an empty picker. Open to every member of the org.
    """
    _roles(ctx)
    with read_tx(ctx.engine) as conn:
        _, f = resolve_field(ctx, conn, workflow, field)
        platform, custom = _active_models(ctx, conn)
    out = PickerResult(Platform=[], Custom=[])
    for group, models in (("Platform", platform), ("Custom", custom)):
        for m in models:
            reason = why_hidden(f, m)
            if reason is None or include_hidden:
                out[group].append(PickerEntry(label=m.label, ref=m.ref, type=m.type, why_hidden=reason))
    return out


# -- CSV seeding (W-8) -----------------------------------------------------------------------------
class SeedError(InvalidRequest):
    """The CSV had bad rows; nothing was applied. ``errors`` lists ``line N: reason``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        count = len(errors)
        super().__init__(f"CSV not applied: {count} bad row{'s' if count != 1 else ''} — nothing was "
                         f"changed\n" + "\n".join(errors))


# A seeding file is a list of assignments, not a data set: these bounds keep a bad or huge file
# from tying up the store (validation reads, then one short write). Documented in the README.
MAX_CSV_BYTES = 1024 * 1024      # 1 MiB
MAX_CSV_ROWS = 10_000


def _too_large(what: str) -> InvalidRequest:
    return InvalidRequest(f"the CSV is too large: {what}; a seeding file may hold at most "
                          f"{MAX_CSV_ROWS:,} rows and {MAX_CSV_BYTES // 1024:,} KiB — split it into "
                          f"several files")


def _read_csv_text(path_or_file: Any) -> str:
    # Never read more than one byte past the limit, whatever the file's size.
    if hasattr(path_or_file, "read"):
        data = path_or_file.read(MAX_CSV_BYTES + 1)
    elif isinstance(path_or_file, (str, os.PathLike)):
        try:
            with open(path_or_file, "rb") as fh:
                data = fh.read(MAX_CSV_BYTES + 1)
        except FileNotFoundError:
            raise NotFound(f"no CSV file {os.fspath(path_or_file)!r}") from None
        except IsADirectoryError:
            raise InvalidRequest(f"{os.fspath(path_or_file)!r} is a directory, not a CSV file") from None
        except OSError as exc:
            raise InvalidRequest(f"cannot read {os.fspath(path_or_file)!r}: {exc.strerror}") from None
        except ValueError:   # a NUL byte or a lone surrogate: no file can have that name
            raise InvalidRequest("the CSV path is not a valid file name") from None
    else:
        raise InvalidRequest("seed_assignments_csv takes a path or an open file")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidRequest("seed_assignments_csv takes a path or an open file")
    if len(data) > MAX_CSV_BYTES:
        raise _too_large(f"more than {MAX_CSV_BYTES // 1024:,} KiB")
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("the CSV file is not UTF-8 text") from None
    return text.lstrip("\ufeff")


def _parse_csv(text: str) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[str]]:
    """(header, [(line number, row)], errors). The header is line 1; a quoted value spanning lines
    is reported at the line where its row starts; blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    errors: list[str] = []
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidRequest("the CSV file is empty; it needs the header line workflow,field,model") from None
    except csv.Error as exc:
        raise InvalidRequest(f"line 1: {exc}") from None
    header = [h.strip().lower() for h in header]
    missing = [c for c in FIELD_COLUMNS if c not in header]
    unknown = [h for h in header if h not in (*FIELD_COLUMNS, "project")]
    if missing or unknown or len(set(header)) != len(header):
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
        if len(set(header)) != len(header):
            parts.append("a column is repeated")
        raise InvalidRequest("line 1: the header must be workflow,field,model with an optional project "
                             "column — " + "; ".join(parts))
    rows: list[tuple[int, dict[str, str]]] = []
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"line {start}: {exc}")
            break
        line, start = start, reader.line_num + 1
        if not values or all(not v.strip() for v in values):
            continue
        if len(rows) + len(errors) >= MAX_CSV_ROWS:
            raise _too_large(f"more than {MAX_CSV_ROWS:,} rows")
        if len(values) != len(header):
            errors.append(f"line {line}: expected {len(header)} values ({','.join(header)}), got {len(values)}")
            continue
        rows.append((line, {h: v.strip() for h, v in zip(header, values)}))
    return header, rows, errors


def seed_assignments_csv(ctx: Context, path_or_file: Any) -> int:
    """Assign models to workflow fields from a CSV with columns ``workflow, field, model``
    (and optionally ``project``, for workflow names used in several projects).

    Every row is validated first — workflow and field exist, the model is a platform id or an
    active custom slug with the capabilities the field needs, the actor may edit that workflow, no
    field is given two different models — and then all rows are applied in one transaction, or
    none: a bad file raises :class:`SeedError` (an ``InvalidRequest``) listing every bad row as
    ``line N: reason``, N being the file's line (the header is line 1). Returns the number of
    assignments applied. Takes a path (str or ``os.PathLike``) or an open file (text or binary) of
    at most 1 MiB and 10,000 rows (``InvalidRequest`` beyond).

    The file is parsed and validated outside any write transaction (reads do not block other
    writers); the write transaction re-checks only what the rows resolved to — a few batched
    reads — and applies the assignments, so other users' writes wait milliseconds, not the time
    it takes to validate a large file.
    """
    _roles(ctx)
    _, rows, errors = _parse_csv(_read_csv_text(path_or_file))
    with read_tx(ctx.engine) as conn:
        plan = _SeedPlan(ctx, conn, _roles_in(ctx, conn))
        for line, row in rows:
            plan.add(line, row)
    errors += plan.errors
    if errors:
        raise SeedError(_by_line(errors))
    if not plan.updates:
        return 0
    with write_tx(ctx.engine) as conn:
        # What the rows resolved to may have changed since (a model deleted, a role removed, a
        # field redefined): check that again, in batches, before writing.
        stale = plan.recheck(conn, _roles_in(ctx, conn))
        if stale:
            raise SeedError(_by_line(stale))
        plan.apply(conn)
    return len(plan.updates)


def _by_line(errors: list[str]) -> list[str]:
    return sorted(errors, key=lambda e: int(e.split(":", 1)[0].split()[1]))


def _roles_in(ctx: Context, conn: "Connection") -> list[tuple[str, int]]:
    m = schema.members
    roles = [tuple(r) for r in conn.execute(select(m.c.role, m.c.project_id).where(
        m.c.org_id == ctx.org_id, m.c.user_name == ctx.user))]
    if not roles:
        raise not_a_member(ctx.org, ctx.user)
    return roles


class _SeedPlan:
    """The validated assignments of one CSV: each distinct workflow, field and model is looked up
    once (a file of 10,000 rows naming a few workflows costs a few queries, not 30,000)."""

    def __init__(self, ctx: Context, conn: "Connection", roles: list[tuple[str, int]]) -> None:
        self.ctx, self.conn, self.roles = ctx, conn, roles
        self.errors: list[str] = []
        # field row id -> (line, ref, workflow row, field definition)
        self.updates: dict[int, tuple[int, str, _WorkflowRow, LLMField]] = {}
        self._workflows: dict[tuple[str, str | None], _WorkflowRow | RegistryError] = {}
        self._by_name: dict[str, list[Any]] | None = None     # the org's workflows, read once
        self._fields: dict[int, dict[str, Any]] = {}          # workflow id -> its fields by name
        self._models: dict[str, ModelInfo | None] = {}

    def _workflow(self, label: str, project: str | None) -> _WorkflowRow:
        if self._by_name is None:
            self._by_name = {}
            for r in self.conn.execute(_workflow_query(self.ctx)).all():
                self._by_name.setdefault(r.name, []).append(r)

        def named(name: str, in_project: str | None) -> list[Any]:
            rows = self._by_name.get(name, [])
            return [r for r in rows if r.project == in_project] if in_project else rows

        return _choose_workflow(self.ctx, label.strip(), project, named)

    def _field(self, wf: _WorkflowRow, name: str) -> Any:
        fields = self._fields.get(wf.id)
        if fields is None:
            fields = self._fields[wf.id] = {r["name"]: r for r in _field_rows(self.conn, wf.id)}
        row = fields.get(name.strip())
        if row is None:
            raise NotFound(f"workflow {wf.name!r} has no field {name!r}")
        return row

    def _cached(self, cache: dict, key: Any, load: Any) -> Any:
        if key not in cache:
            try:
                cache[key] = load()
            except RegistryError as exc:
                cache[key] = exc
        value = cache[key]
        if isinstance(value, RegistryError):
            raise value
        return value

    def add(self, line: int, row: dict[str, str]) -> None:
        blank = [c for c in FIELD_COLUMNS if not row.get(c)]
        if blank:
            self.errors.append(f"line {line}: {', '.join(blank)} {'is' if len(blank) == 1 else 'are'} blank")
            return
        ctx, conn = self.ctx, self.conn
        project = row.get("project") or None
        try:
            wf = self._cached(self._workflows, (row["workflow"], project),
                              lambda: self._workflow(row["workflow"], project))
            if not _may_edit(self.roles, wf.project_id):
                raise _edit_forbidden(ctx, wf.project)
            frow = self._field(wf, row["field"])
            model = self._cached(self._models, row["model"], lambda: lookup_model(ctx, row["model"], conn))
            field = _field_from_row(frow)
            check_model_for_field(field, model, row["model"], ctx.org)
        except RegistryError as exc:
            self.errors.append(f"line {line}: {exc.message}")
            return
        earlier = self.updates.get(frow["id"])
        if earlier is not None and earlier[1] != row["model"]:
            self.errors.append(f"line {line}: field {row['field']!r} of workflow {wf.name!r} is already "
                               f"assigned {earlier[1]!r} on line {earlier[0]}")
        elif earlier is None:
            self.updates[frow["id"]] = (line, row["model"], wf, field)

    def recheck(self, conn: "Connection", roles: list[tuple[str, int]]) -> list[str]:
        """The rows whose validation no longer holds, read in a few batched queries."""
        f, w = schema.workflow_fields, schema.workflows
        now: dict[int, Any] = {}
        ids = sorted(self.updates)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for r in conn.execute(select(f, w.c.project_id.label("_project_id"))
                                  .select_from(f.join(w, w.c.id == f.c.workflow_id))
                                  .where(f.c.id.in_(chunk), w.c.org_id == self.ctx.org_id)).mappings():
                now[r["id"]] = r
        models = {ref: lookup_model(self.ctx, ref, conn) for ref in {u[1] for u in self.updates.values()}}
        stale = []
        for field_id, (line, ref, wf, field) in self.updates.items():
            try:
                current = now.get(field_id)
                if current is None or current["_project_id"] != wf.project_id:
                    raise NotFound(f"workflow {wf.name!r} has no field {field.name!r} any more")
                if not _may_edit(roles, wf.project_id):
                    raise _edit_forbidden(self.ctx, wf.project)
                check_model_for_field(_field_from_row(current), models[ref], ref, self.ctx.org)
            except RegistryError as exc:
                stale.append(f"line {line}: {exc.message}")
        return stale

    def apply(self, conn: "Connection") -> None:
        f = schema.workflow_fields
        conn.execute(f.update().where(f.c.id == bindparam("field_id")).values(model_ref=bindparam("ref")),
                     [{"field_id": fid, "ref": ref} for fid, (_, ref, _, _) in self.updates.items()])
