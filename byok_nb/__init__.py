"""byok_nb — bring-your-own-key LLM models for notebooks.

>>> import byok_nb
>>> reg = byok_nb.open_registry("sqlite://", master_key=byok_nb.generate_master_key())  # doctest: +SKIP

Importing this package is light: pandas, SQLAlchemy, boto3 and ipywidgets load when first used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProviderError,
    RegistryError,
    StoreUnavailable,
    Unauthorized,
)
from .core.lazy import lazy_attributes

__version__ = "0.1.0"

# Public names served lazily: name -> module that defines it.
_LAZY = {
    "CapabilityProbe": ".core.domain",
    "CustomModel": ".core.domain",
    "Completion": ".core.domain",
    "ConnectionTest": ".core.domain",
    "DeleteResult": ".core.domain",
    "LLMField": ".core.domain",
    "ModelDraft": ".core.domain",
    "Org": ".core.domain",
    "PickerEntry": ".core.domain",
    "PickerResult": ".core.domain",
    "PlatformModel": ".core.domain",
    "Project": ".core.domain",
    "Registry": ".registry",
    "RegistryWarning": ".core.errors",
    "Session": ".registry",
    "Workflow": ".core.domain",
    "connect": ".remote.client",
    "generate_master_key": ".core.secrets",
    "open_registry": ".registry",
}

# A literal list (sorted), so that type checkers read it: with ``--strict`` (no implicit
# re-export) only names listed here may be imported from ``byok_nb``.
__all__ = [
    "CapabilityProbe", "Completion", "Conflict", "ConnectionTest", "CustomModel", "DeleteResult",
    "Forbidden", "InvalidRequest", "LLMField", "ModelDraft", "NotFound", "Org", "PickerEntry",
    "PickerResult", "PlatformModel", "Project", "ProviderError", "Registry", "RegistryError",
    "RegistryWarning", "Session", "StoreUnavailable", "Unauthorized", "Workflow", "__version__",
    "connect", "generate_master_key", "open_registry",
]

def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext byok_nb``: the ``%%byok`` cell magic (IPython is imported only now)."""
    from .ui.magic import load_ipython_extension as load

    load(ipython)


# Hidden from type checkers: a module-level __getattr__ would make every misspelt name
# (``byok_nb.opne_registry``) type-check as Any; they see the imports below instead.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from .core.domain import (
        CapabilityProbe,
        Completion,
        ConnectionTest,
        CustomModel,
        DeleteResult,
        LLMField,
        ModelDraft,
        Org,
        PickerEntry,
        PickerResult,
        PlatformModel,
        Project,
        Workflow,
    )
    from .core.errors import RegistryWarning
    from .core.secrets import generate_master_key
    from .registry import Registry, Session, open_registry
    from .remote.client import connect
