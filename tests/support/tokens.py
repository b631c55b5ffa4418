"""Tokens for tests, signed with the local HMAC secret every service accepts."""

from __future__ import annotations

from service_kit.auth import AuthSettings, mint_token

TEST_SECRET = "test-secret-for-the-suite-0123456789abcdef"
TEST_AUTH = AuthSettings(algorithms=["HS256"], secret=TEST_SECRET)
AUTH_ENV = {"JWT_ALGORITHMS": '["HS256"]', "JWT_SECRET": TEST_SECRET}


def token(
    org_id: int,
    role: str = "ADMIN",
    property_ids: list[int] | None = None,
    user_id: str | None = None,
    ttl_s: int = 3600,
) -> str:
    """A signed token for the given org, role and properties."""
    return mint_token(
        TEST_AUTH,
        org_id=org_id,
        role=role,
        user_id=user_id or f"user-{org_id}-{role.lower()}",
        property_ids=property_ids,
        ttl_s=ttl_s,
    )


def bearer(org_id: int, role: str = "ADMIN", **kwargs: object) -> dict[str, str]:
    """An ``Authorization`` header for ``token(...)``."""
    return {"Authorization": "Bearer " + token(org_id, role, **kwargs)}  # type: ignore[arg-type]
