"""Token verification: what a client with a good, bad or hostile token gets."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from service_kit.auth import (
    AuthSettings,
    Forbidden,
    InvalidToken,
    TokenVerifier,
    bearer_token,
    mint_token,
)

SECRET = "unit-test-secret-0123456789abcdef0123"
HS = AuthSettings(algorithms=["HS256"], secret=SECRET, leeway_s=5)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "user-1",
        "orgId": 1,
        "role": "ADMIN",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )
    return private, public


def test_valid_token_gives_its_claims() -> None:
    claims = TokenVerifier(HS).verify(_hs(_claims(propertyIds=[11])))
    assert (claims.sub, claims.org_id, claims.role) == ("user-1", 1, "ADMIN")
    assert claims.may_see_property(11) and not claims.may_see_property(12)


def test_admin_without_property_list_sees_every_property() -> None:
    claims = TokenVerifier(HS).verify(_hs(_claims()))
    assert claims.may_see_property(11) and claims.may_see_property(12)


def test_minted_token_verifies() -> None:
    token = mint_token(HS, org_id=2, role="MANAGER", user_id="u", property_ids=[21])
    claims = TokenVerifier(HS).verify(token)
    assert (claims.org_id, claims.role, claims.property_ids) == (2, "MANAGER", [21])


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        (_claims(exp=int(time.time()) - 60), "expired"),
        (_claims(exp=None), "exp"),
        (_claims(sub=None), "sub"),
        (_claims(nbf=int(time.time()) + 600), "not yet valid"),
        (_claims(iat=int(time.time()) + 600), "not yet valid"),
        (_claims(orgId="1"), "orgId"),
        (_claims(orgId=None), "orgId"),
        (_claims(propertyIds="11"), "propertyIds"),
    ],
)
def test_bad_claims_are_401(token_claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        TokenVerifier(HS).verify(_hs(token_claims))
    assert caught.value.status == 401
    assert reason in str(caught.value.detail)
    assert caught.value.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_token_issued_slightly_in_the_future_is_accepted_within_leeway() -> None:
    claims = TokenVerifier(HS).verify(_hs(_claims(iat=int(time.time()) + 3)))
    assert claims.org_id == 1


def test_wrong_signature_is_401() -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(HS).verify(_hs(_claims(), secret="x" * 40))


def test_alg_none_is_401() -> None:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    unsigned = part({"alg": "none", "typ": "JWT"}) + "." + part(_claims()) + "."
    with pytest.raises(InvalidToken):
        TokenVerifier(HS).verify(unsigned)


def test_payload_edited_to_another_org_is_401() -> None:
    header, _, signature = _hs(_claims()).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(_claims(orgId=2)).encode())
    token = f"{header}.{forged.rstrip(b'=').decode()}.{signature}"
    with pytest.raises(InvalidToken):
        TokenVerifier(HS).verify(token)


def test_hs256_signed_with_the_rs256_public_key_is_401(
    rsa_keys: tuple[str, str],
) -> None:
    _, public = rsa_keys
    verifier = TokenVerifier(AuthSettings(algorithms=["RS256"], public_key=public))
    header = {"alg": "HS256", "typ": "JWT"}

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    import hashlib
    import hmac

    signing_input = (
        part(json.dumps(header).encode()) + "." + part(json.dumps(_claims()).encode())
    )
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken):
        verifier.verify(signing_input + "." + part(mac))


def test_rs256_deployment_accepts_its_own_tokens(rsa_keys: tuple[str, str]) -> None:
    private, public = rsa_keys
    verifier = TokenVerifier(AuthSettings(algorithms=["RS256"], public_key=public))
    token = jwt.encode(_claims(orgId=7), private, algorithm="RS256")
    assert verifier.verify(token).org_id == 7


@pytest.mark.parametrize("role", ["OWNER", "admin", None])
def test_unknown_or_missing_role_is_403(role: str | None) -> None:
    with pytest.raises(Forbidden) as caught:
        TokenVerifier(HS).verify(_hs(_claims(role=role)))
    assert caught.value.status == 403


def test_mixing_hmac_and_public_key_algorithms_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="must not mix"):
        TokenVerifier(AuthSettings(algorithms=["HS256", "RS256"], public_key="x"))


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Token abc"])
def test_missing_or_non_bearer_authorization_is_401(header: str | None) -> None:
    with pytest.raises(InvalidToken):
        bearer_token(header)


def test_manager_outside_property_list_is_forbidden() -> None:
    claims = TokenVerifier(HS).verify(_hs(_claims(role="MANAGER", propertyIds=[11])))
    claims.require_property(11)
    with pytest.raises(Forbidden):
        claims.require_property(21)
    with pytest.raises(Forbidden):
        claims.require_role("ADMIN")


def test_a_remembered_token_is_refused_once_it_expired() -> None:
    now = time.time()
    clock = [now]
    verifier = TokenVerifier(HS, clock=lambda: clock[0])
    token = _hs(_claims(exp=int(now) + 60))
    assert verifier.verify(token).sub == "user-1"

    clock[0] = now + 60 + HS.leeway_s + 1
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_a_remembered_token_keeps_its_claims_and_bad_ones_stay_refused() -> None:
    verifier = TokenVerifier(HS, cache_size=1)
    first, second = _hs(_claims(sub="a")), _hs(_claims(sub="b"))
    assert verifier.verify(first).sub == "a"
    assert verifier.verify(second).sub == "b"
    assert verifier.verify(first).sub == "a"  # pushed out of the cache, verified again
    forged = first[:-2] + ("AA" if not first.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
