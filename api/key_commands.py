"""``instore keys create|list|revoke``: API keys for brands, tills and operators (see ``api/auth.py``)."""

from __future__ import annotations

import argparse
import json


def cmd_keys(args: argparse.Namespace) -> int:
    from api.auth import AuthError, KeyStore
    from api.cli import CliError
    from api.settings import SettingsError, load_settings

    try:
        settings = load_settings(db=args.db)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    keys = KeyStore(settings.db)
    try:
        if args.keys_command == "create":
            try:
                key_id, token = keys.create_key(args.kind, args.scope)
            except AuthError as exc:
                raise CliError(str(exc)) from None
            print(json.dumps({"id": key_id, "kind": args.kind, "scope": args.scope, "token": token}))
        elif args.keys_command == "list":
            for k in keys.list_keys():
                print(json.dumps(k))
        else:
            if not keys.revoke(args.id):
                raise CliError(f"{args.id}: no such active key")
            print(json.dumps({"id": args.id, "revoked": True}))
    finally:
        keys.close()
    return 0
