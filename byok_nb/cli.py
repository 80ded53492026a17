"""The ``byok-nb`` command: serve | demo | gateway | scan | rotate-key | adopt-key | platform sync | member | token."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from .core.durable_files import fsync_dir
from .core.errors import RegistryError
from .core.secrets import (
    KEY_FILE_NAME,
    SecretBox,
    create_key_file,
    decode_master_key,
    key_id_of,
    read_key_file,
)
from .services import api_tokens
from .store import ensure_schema, key_custody, make_engine


def _cmd_rotate_key(args: argparse.Namespace) -> int:
    """The current key is found as open_registry finds it (BYOK_NB_MASTER_KEY, else the key
    file), but a missing key file is an error here, never silently created. See docs/security.md."""
    from .registry import byok_home, default_database_url, open_registry

    new_key = args.new_key or os.environ.get("BYOK_NB_NEW_MASTER_KEY")
    if not new_key:
        print("error: give the new key in BYOK_NB_NEW_MASTER_KEY (or --new-key); make one with\n"
              "  python -c 'import byok_nb; print(byok_nb.generate_master_key())'", file=sys.stderr)
        return 2
    new_raw = decode_master_key(new_key)
    home = byok_home()
    key_file = home / KEY_FILE_NAME
    from_env = bool(os.environ.get("BYOK_NB_MASTER_KEY"))
    if from_env:
        current = decode_master_key(os.environ["BYOK_NB_MASTER_KEY"])
        source = "BYOK_NB_MASTER_KEY"
    else:
        current = read_key_file(key_file)   # refuses a key file readable by others, a directory...
        source = str(key_file)
    if current is None:
        print(f"error: no current master key: BYOK_NB_MASTER_KEY is not set and {key_file} does not "
              f"exist (BYOK_NB_HOME={home})", file=sys.stderr)
        return 2
    if args.write_key_file and from_env:
        print("error: --write-key-file: the current key comes from BYOK_NB_MASTER_KEY, which takes "
              "precedence over the key file; set BYOK_NB_MASTER_KEY to the new key instead",
              file=sys.stderr)
        return 2
    url = args.database_url or default_database_url()
    missing = _missing_sqlite_file(url)
    if missing:
        print(f"error: no registry database at {missing}", file=sys.stderr)
        return 2

    staged = key_file.with_name(KEY_FILE_NAME + ".new")
    if args.write_key_file and staged.exists():
        print(f"error: {staged} exists: an earlier rotation stopped between its commit and installing "
              f"the key file. See docs/security.md, 'If a rotation is interrupted'; nothing was changed",
              file=sys.stderr)
        return 2
    wrote_stage = committed = False
    if args.write_key_file and not args.dry_run:
        # Written before the commit, so a crash between commit and rename still leaves the new
        # key on disk beside the old one (docs/security.md, "If a rotation is interrupted").
        _write_private(staged, new_key.strip())
        wrote_stage = True
    try:
        with open_registry(url, master_key=current) as reg:
            report = reg.rotate_master_key(new_raw, dry_run=args.dry_run)
            committed = not args.dry_run
    finally:
        if wrote_stage and not committed:
            staged.unlink(missing_ok=True)   # nothing was committed: the old key stays the key
    old_id, new_id = key_id_of(current), key_id_of(new_raw)
    if report.dry_run:
        print(f"dry run: would re-encrypt {report.secrets} secret(s) from key {old_id} to key {new_id}; "
              f"every stored secret decrypts with the current key ({source}); nothing was changed")
        return 0
    print(f"re-encrypted {report.secrets} secret(s) from key {old_id} to key {new_id} in one transaction; "
          f"the old key no longer decrypts any of them")
    if args.write_key_file:
        os.replace(staged, key_file)

        fsync_dir(key_file.parent)
        print(f"{key_file} now holds the new key. Restart every kernel and Voila app that uses this "
              f"registry.")
    else:
        where = "BYOK_NB_MASTER_KEY" if from_env else f"{key_file} (mode 600)"
        print(f"Install the new key now: put it in {where} wherever this registry is opened, then "
              f"restart every kernel and Voila app that uses it. Until then they cannot decrypt "
              f"credentials, and a process still running with the old key would store new "
              f"credentials the new key cannot read (run rotate-key again to fix those).")
    print("Database backups taken before this rotation still need the old key.")
    return 0


def _cmd_adopt_key(args: argparse.Namespace) -> int:
    """Recovery from a master key that is truly lost: make the key this process finds
    (BYOK_NB_MASTER_KEY, else master.key — created when there is none) the store's key. Every
    secret it cannot read is cleared, so each such model asks for its credentials again. Without
    --confirm-lost-key it only says what it would do. See docs/security.md."""
    from .registry import byok_home, default_database_url
    home = byok_home()
    key_file = home / KEY_FILE_NAME
    if os.environ.get("BYOK_NB_MASTER_KEY"):
        raw, source = decode_master_key(os.environ["BYOK_NB_MASTER_KEY"]), "BYOK_NB_MASTER_KEY"
    else:
        raw, source = read_key_file(key_file), str(key_file)
    url = args.database_url or default_database_url()
    missing = _missing_sqlite_file(url)
    if missing:
        print(f"error: no registry database at {missing}", file=sys.stderr)
        return 2
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        state = key_custody.describe(engine)
        recorded, counts = state["recorded"], state["secrets_by_key"]
        held = key_id_of(raw) if raw is not None else None
        if held is not None and recorded == held and set(counts) <= {held}:
            print(f"master key {held} ({source}) is already the store's key; nothing to adopt")
            return 0
        stranded = sum(n for kid, n in counts.items() if kid != held)
        if not args.confirm_lost_key:
            using = (f"master key {held} ({source})" if held is not None else
                     f"a new master key, written to {key_file} (mode 600)")
            print(f"adopt-key would make {using} the store's key in place of master key "
                  f"{recorded or '(none recorded)'}, and clear {stranded} stored secret(s) it cannot "
                  f"read: their models then ask for their credentials again. Only do this when the "
                  f"old key is truly lost. Nothing was changed; to proceed run:\n"
                  f"  byok-nb adopt-key --confirm-lost-key", file=sys.stderr)
            return 2
        if raw is None:
            raw = create_key_file(home)
            print(f"created a new master key in {key_file} (mode 600)")
        report = key_custody.adopt_key(engine, SecretBox(raw))
    finally:
        engine.dispose()
    if report.already_current:
        print(f"master key {report.new_key_id} is already the store's key; nothing to adopt")
        return 0
    print(f"adopted master key {report.new_key_id} in place of {report.previous_key_id or '(none recorded)'}; "
          f"cleared {len(report.cleared)} stored secret(s) that only the lost key could read")
    for name in report.cleared:
        print(f"  re-enter the credentials of {name}")
    print("Restart every kernel and Voila app that uses this registry with the adopted key.")
    return 0


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a file-based SQLite URL whose file does not exist (rotation must not create it)."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - open_registry reports a bad URL properly
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database).expanduser()
    return None if path.exists() else str(path)


def _write_private(path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, durably."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())



def _cmd_platform_sync(args: argparse.Namespace) -> int:
    from .services.catalog_sync import sync_platform_catalog

    report = sync_platform_catalog(path=args.output, ids=args.ids or None)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from .scan import scan_command

    return scan_command(args.paths, database_url=args.database_url, use_registry=not args.no_registry)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server.admin_app import serve

    return serve(port=args.port, notebook=args.notebook, open_browser=args.open, host=args.host,
                 token=not args.no_token)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .server.admin_app import demo

    return demo(port=args.port, token=args.token)


def _cmd_member(args: argparse.Namespace) -> int:
    """Org membership, with the operator's authority (whoever holds the store and its master key
    may change it; there is no acting user to check)."""
    from .registry import default_database_url, open_registry

    url = args.database_url or default_database_url()
    missing = _missing_sqlite_file(url)
    if missing:   # never create an empty registry just to report that nobody is in it
        print(f"error: no registry database at {missing}", file=sys.stderr)
        return 2
    with open_registry(url) as reg:
        if args.member_command == "add":
            member = reg.add_member(args.org, args.user, role=args.role, project=args.project)
            print(f"added {member.user!r} to org {member.org!r} as {member.role}"
                  + (f" on project {member.project!r}" if member.project else ""))
        elif args.member_command == "remove":
            ended = reg.remove_member(args.org, args.user, project=args.project)
            roles = ", ".join(m.role + (f" on project {m.project!r}" if m.project else "") for m in ended)
            print(f"removed {args.user!r} from org {args.org!r} ({roles}); their sessions stop "
                  f"working on their next call")
        else:
            members = reg.members(args.org)
            if not members:
                print(f"org {args.org!r} has no members")
            for m in members:
                print(f"{m.user}\t{m.role}\t{m.project or ''}".rstrip())
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    """The gateway's API tokens, with the operator's authority (as ``member``). ``create`` prints
    the token once, alone on stdout so a script can capture it; nothing else ever shows it."""
    from .registry import default_database_url, open_registry

    url = args.database_url or default_database_url()
    missing = _missing_sqlite_file(url)
    if missing:   # never create an empty registry just to report that it has no tokens
        print(f"error: no registry database at {missing}", file=sys.stderr)
        return 2
    with open_registry(url) as reg:
        engine = reg._engine
        org_id = api_tokens.org_id_of(engine, args.org)
        if args.token_command == "create":
            name = args.name or f"{args.user}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
            token = api_tokens.create(engine, org_id, args.org, None, args.user, name, args.expires_in_days)
            print(token)
            expiry = f"expires in {args.expires_in_days} day(s)" if args.expires_in_days else "never expires"
            print(f"created API token {name!r} for {args.user!r} in org {args.org!r} ({expiry}); it is "
                  f"shown only this once — store it now", file=sys.stderr)
        elif args.token_command == "revoke":
            owner = next((r["user"] for r in api_tokens.list_tokens(engine, org_id, args.org, None)
                          if r["name"] == args.name), None)
            if args.user is not None and owner is not None and owner != args.user:
                print(f"error: API token {args.name!r} of org {args.org!r} acts as {owner!r}, not "
                      f"{args.user!r}; nothing was revoked", file=sys.stderr)
                return 2
            if api_tokens.revoke(engine, org_id, args.org, None, args.name):
                print(f"revoked API token {args.name!r} of org {args.org!r}; it is refused from its next request")
            else:
                print(f"API token {args.name!r} of org {args.org!r} was already revoked")
        else:
            rows = [r for r in api_tokens.list_tokens(engine, org_id, args.org, None)
                    if args.user is None or r["user"] == args.user]
            if not rows:
                print(f"org {args.org!r} has no API tokens" + (f" of {args.user!r}" if args.user else ""))
            for r in rows:
                state = "revoked" if r["revoked_at"] else "active" if r["active"] else "expired"
                print("\t".join([r["name"], r["user"], r["prefix"] + "…", state, _when(r["created_at"]),
                                 "expires " + _when(r["expires_at"]), "last used " + _when(r["last_used_at"])]))
    return 0


def _when(value) -> str:
    return "never" if value is None else value.isoformat(timespec="seconds")


def _cmd_gateway(args: argparse.Namespace) -> int:
    """The OpenAI-compatible gateway over the configured registry (docs/gateway.md)."""
    from .registry import default_database_url, open_registry
    from .server.gateway import serve_gateway

    url = args.database_url or default_database_url()
    missing = _missing_sqlite_file(url)
    if missing:   # a gateway over a new, empty registry would only ever answer 401
        print(f"error: no registry database at {missing}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    registry = open_registry(url)   # here too with several workers: a bad key or URL fails at once
    print(f"byok-nb gateway on http://{args.host}:{args.port}/v1 (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    try:
        if args.workers > 1:
            registry.close()
            os.environ["BYOK_NB_DATABASE_URL"] = url   # what each worker opens
            serve_gateway(args.host, args.port, log_level=args.log_level, workers=args.workers)
        else:
            serve_gateway(args.host, args.port, registry=registry, log_level=args.log_level)
    finally:
        registry.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="byok-nb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the admin app with Voila on 127.0.0.1, behind a session token")
    serve.add_argument("--port", type=int, default=8866)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; anything else is reachable by other machines)")
    serve.add_argument("--notebook", default=None, help="notebook to serve (default: the admin app)")
    serve.add_argument("--open", action="store_true", help="open a browser (at the URL with the token)")
    serve.add_argument("--no-token", action="store_true",
                       help="serve without a token: every local user gets the app; refused unless --host is loopback")
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser("demo", help="serve the admin app on a throwaway registry with a fake provider")
    demo.add_argument("--port", type=int, default=8866)
    demo.add_argument("--token", action="store_true", help="protect the demo with a session token, as serve does")
    demo.set_defaults(func=_cmd_demo)

    scan = sub.add_parser("scan", help="report key-shaped strings in notebooks' outputs and widget state")
    scan.add_argument("paths", nargs="+")
    scan.add_argument("--database-url", default=None)
    scan.add_argument("--no-registry", action="store_true", help="do not also look for the registry's stored secrets")
    scan.set_defaults(func=_cmd_scan)

    rotate = sub.add_parser("rotate-key", help="re-encrypt every stored secret under a new master key")
    rotate.add_argument("--new-key", default=None,
                        help="the new key, as --new-key=KEY (a key may start with '-'); prefer BYOK_NB_NEW_MASTER_KEY: "
                             "a command line is visible to other users")
    rotate.add_argument("--dry-run", action="store_true",
                        help="check every secret decrypts and report the count; change nothing")
    rotate.add_argument("--write-key-file", action="store_true",
                        help="when the current key is the key file, replace it with the new key after the commit")
    rotate.add_argument("--database-url", default=None, help="default: BYOK_NB_DATABASE_URL, else the embedded registry")
    rotate.set_defaults(func=_cmd_rotate_key)

    adopt = sub.add_parser("adopt-key", help="when the master key is truly lost: adopt the current key "
                                             "(BYOK_NB_MASTER_KEY or master.key); every stored secret "
                                             "must then be re-entered")
    adopt.add_argument("--confirm-lost-key", action="store_true",
                       help="do it: clear every secret the adopted key cannot read (without this flag "
                            "the command only says what it would do)")
    adopt.add_argument("--database-url", default=None, help="default: BYOK_NB_DATABASE_URL, else the embedded registry")
    adopt.set_defaults(func=_cmd_adopt_key)

    member = sub.add_parser("member", help="add, remove or list the members of an org (operator)")
    member_sub = member.add_subparsers(dest="member_command", required=True)
    for name, help_text in (("add", "give a user a role in an org"),
                            ("remove", "end a user's membership of an org (every role, or one project's)"),
                            ("list", "list an org's members and their roles")):
        cmd = member_sub.add_parser(name, help=help_text)
        cmd.add_argument("--org", required=True)
        if name != "list":
            cmd.add_argument("--user", required=True)
        if name == "add":
            cmd.add_argument("--role", required=True, choices=("org_admin", "project_admin", "contributor"))
        if name in ("add", "remove"):
            cmd.add_argument("--project", default=None,
                             help="the project of a project_admin / contributor role"
                                  + (" (remove only that role)" if name == "remove" else ""))
        cmd.add_argument("--database-url", default=None,
                         help="default: BYOK_NB_DATABASE_URL, else the embedded registry")
        cmd.set_defaults(func=_cmd_member)

    token = sub.add_parser("token", help="create, list or revoke the gateway's API tokens (operator)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    for name, help_text in (("create", "make an API token acting as a member (printed once)"),
                            ("list", "list an org's API tokens (never the tokens themselves)"),
                            ("revoke", "revoke an API token by name")):
        cmd = token_sub.add_parser(name, help=help_text)
        cmd.add_argument("--org", required=True)
        cmd.add_argument("--user", required=name == "create",
                         help="the member the token acts as" if name == "create" else
                              "only this user's tokens" if name == "list" else
                              "check that the token acts as this user before revoking it")
        if name != "list":
            cmd.add_argument("--name", required=name == "revoke",
                             help="the token's name, unique in the org" +
                                  (" (default: <user>-<UTC date and time>)" if name == "create" else ""))
        if name == "create":
            cmd.add_argument("--expires-in-days", type=int, default=None,
                             help="days until it expires (default: never; revoke it instead)")
        cmd.add_argument("--database-url", default=None,
                         help="default: BYOK_NB_DATABASE_URL, else the embedded registry")
        cmd.set_defaults(func=_cmd_token)
    gateway = sub.add_parser("gateway", help="serve an OpenAI-compatible API (/v1/models, /v1/chat/completions) "
                                             "over the registry's models, for API tokens")
    gateway.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1; anything else is reachable by other machines)")
    gateway.add_argument("--port", type=int, default=8870)
    gateway.add_argument("--workers", type=int, default=1,
                         help="processes serving the port (default 1; up to one per core raises throughput)")
    gateway.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    gateway.add_argument("--database-url", default=None, help="default: BYOK_NB_DATABASE_URL, else the embedded registry")
    gateway.set_defaults(func=_cmd_gateway)

    platform = sub.add_parser("platform", help="platform model catalogue")
    platform_sub = platform.add_subparsers(dest="platform_command", required=True)
    sync = platform_sub.add_parser("sync", help="refresh prices and capabilities from OpenRouter")
    sync.add_argument("--output", default=None)
    sync.add_argument("--ids", nargs="*", default=None)
    sync.set_defaults(func=_cmd_platform_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RegistryError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
