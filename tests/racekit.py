"""The M-5 race, shared by the registry and hardening suites: spawn-safe worker processes that
add one slug at the same instant (importable from any test folder: ``tests/`` is on sys.path)."""
from __future__ import annotations

from typing import Any


def warm_up(session) -> None:
    """Open a pooled connection and import what add/edit/delete need, so the workers really
    contend after the barrier (pandas, which list_models needs, is not imported: it is slow)."""
    import byok_nb

    try:
        session.get_model("warm-up-no-such-model")
    except byok_nb.NotFound:
        pass
    try:
        session.add_model(test=False, provider="fireworks", provider_model_id="x", slug="Not A Slug")
    except byok_nb.RegistryError:
        pass


def add_same_slug_worker(url: str, master_key: str, fields: dict[str, Any], barrier, results) -> None:
    """One contender: open the registry as ana of acme, wait for everyone, ``add_model(**fields)``;
    puts "ok", "conflict" or the unexpected error's text on ``results``."""
    outcome = "no result"
    try:
        import byok_nb

        reg = byok_nb.open_registry(url, master_key=master_key)
        session = reg.session(org="acme", user="ana")
        warm_up(session)
        barrier.wait(timeout=120)
        try:
            session.add_model(test=False, **fields)
            outcome = "ok"
        except byok_nb.Conflict:
            outcome = "conflict"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            outcome = f"{type(exc).__name__}: {exc}"
        finally:
            reg.close()
    except BaseException as exc:  # noqa: BLE001
        outcome = f"setup {type(exc).__name__}: {exc}"
    results.put(outcome)



def first_run_worker(stores: list[tuple[str | None, str]], master_key: str, org: str, user: str,
                     barrier, results) -> None:
    """One first visitor of several empty stores, one race per store: open every store first (a
    ``(url, home)`` pair; url None = the embedded default in ``home``), then per store wait for
    everyone and take the first-run path at the same instant — the app's ``bootstrap`` with a URL,
    ``Registry.session`` on the embedded default. Puts ``(user, ["admin" | "visitor" | error
    text, one per store])`` on ``results``."""
    import os

    outcomes: list[str] = []
    try:
        os.environ["BYOK_NB_MASTER_KEY"] = master_key
        os.environ.pop("BYOK_NB_DATABASE_URL", None)
        import byok_nb
        from byok_nb.ui import launch

        registries = []
        for url, home in stores:
            os.environ["BYOK_NB_HOME"] = home
            registries.append(byok_nb.open_registry(url))
        for (url, _), reg in zip(stores, registries):
            barrier.wait(timeout=120)
            try:
                if url is None:
                    try:
                        session = reg.session(org=org, user=user)
                        outcomes.append("admin" if session.is_org_admin else "visitor")
                    except byok_nb.NotFound:   # another visitor's org came first
                        outcomes.append("visitor")
                else:
                    outcomes.append("admin" if launch.bootstrap(reg, org, user) else "visitor")
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
                outcomes.append(f"{type(exc).__name__}: {exc}")
        for reg in registries:
            reg.close()
    except BaseException as exc:  # noqa: BLE001
        outcomes.append(f"setup {type(exc).__name__}: {exc}")
    results.put((user, outcomes))
