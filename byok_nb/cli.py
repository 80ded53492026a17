"""The ``byok-nb`` command: serve | demo | scan | rotate-key | platform sync (E-1)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_rotate_key(args: argparse.Namespace) -> int:
    import os

    from .registry import open_registry

    new_key = args.new_key or os.environ.get("BYOK_NB_NEW_MASTER_KEY")
    if not new_key:
        print("give the new key with --new-key or BYOK_NB_NEW_MASTER_KEY", file=sys.stderr)
        return 2
    with open_registry(args.database_url) as reg:
        report = reg.rotate_master_key(new_key, dry_run=args.dry_run)
    verb = "would re-encrypt" if report.dry_run else "re-encrypted"
    print(f"{verb} {report.secrets} secret(s): key {report.old_key_id} -> {report.new_key_id}")
    if not report.dry_run:
        print("Store the new key now (BYOK_NB_MASTER_KEY or master.key); the old key no longer decrypts.")
    return 0


def _cmd_platform_sync(args: argparse.Namespace) -> int:
    import json

    from .catalog.sync import sync_platform_catalog

    report = sync_platform_catalog(path=args.output, ids=args.ids or None)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from .scan import scan_command

    return scan_command(args.paths, database_url=args.database_url, use_registry=not args.no_registry)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .app import serve

    return serve(port=args.port, notebook=args.notebook, open_browser=args.open)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .app import demo

    return demo(port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="byok-nb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the admin app with Voila on 127.0.0.1")
    serve.add_argument("--port", type=int, default=8866)
    serve.add_argument("--notebook", default=None, help="notebook to serve (default: the admin app)")
    serve.add_argument("--open", action="store_true", help="open a browser")
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser("demo", help="serve the admin app on a throwaway registry with a fake provider")
    demo.add_argument("--port", type=int, default=8866)
    demo.set_defaults(func=_cmd_demo)

    scan = sub.add_parser("scan", help="report key-shaped strings in notebooks' outputs and widget state")
    scan.add_argument("paths", nargs="+")
    scan.add_argument("--database-url", default=None)
    scan.add_argument("--no-registry", action="store_true", help="do not also look for the registry's stored secrets")
    scan.set_defaults(func=_cmd_scan)

    rotate = sub.add_parser("rotate-key", help="re-encrypt every stored secret under a new master key")
    rotate.add_argument("--new-key", default=None, help="the new key (prefer BYOK_NB_NEW_MASTER_KEY)")
    rotate.add_argument("--dry-run", action="store_true")
    rotate.add_argument("--database-url", default=None)
    rotate.set_defaults(func=_cmd_rotate_key)

    platform = sub.add_parser("platform", help="platform model catalogue")
    platform_sub = platform.add_subparsers(dest="platform_command", required=True)
    sync = platform_sub.add_parser("sync", help="refresh prices and capabilities from OpenRouter")
    sync.add_argument("--output", default=None)
    sync.add_argument("--ids", nargs="*", default=None)
    sync.set_defaults(func=_cmd_platform_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import RegistryError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RegistryError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
