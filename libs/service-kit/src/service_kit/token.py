"""Print a signed JWT for local use: ``python -m service_kit.token org=1 role=ADMIN``.

Arguments are ``key=value`` pairs: ``org`` (default 1), ``role`` (ADMIN or MANAGER,
default ADMIN), ``properties`` (comma-separated property ids; omitted means all),
``user`` (default ``user-<org>``) and ``ttl`` in seconds (default 3600). The token is
signed with ``JWT_SECRET``, the secret the locally running services verify with.
"""

from __future__ import annotations

import sys

from service_kit.auth import ROLES, AuthSettings, mint_token


def _parse(arguments: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep or key not in {"org", "role", "properties", "user", "ttl"}:
            raise SystemExit(f"unknown argument {argument!r}; use key=value")
        options[key] = value
    return options


def main(arguments: list[str] | None = None) -> None:
    """Print one token for the options given on the command line."""
    options = _parse(sys.argv[1:] if arguments is None else arguments)
    role = options.get("role", "ADMIN").upper()
    if role not in ROLES:
        raise SystemExit(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    org = int(options.get("org", "1"))
    properties = options.get("properties", "")
    token = mint_token(
        AuthSettings(),
        org_id=org,
        role=role,
        user_id=options.get("user", f"user-{org}"),
        property_ids=[int(p) for p in properties.split(",")] if properties else None,
        ttl_s=int(options.get("ttl", "3600")),
    )
    sys.stdout.write(token + "\n")


if __name__ == "__main__":
    main()
