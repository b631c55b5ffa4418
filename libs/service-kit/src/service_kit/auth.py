"""Bearer JWTs: verification with pinned algorithms, the claims, and access rules.

A token carries ``sub`` (the user id), ``orgId``, ``role`` (``ADMIN`` or ``MANAGER``),
optionally ``propertyIds`` (a MANAGER restricted to some properties) and ``exp``.
The accepted algorithms come from configuration, never from the token: ``none`` and
algorithm confusion (an HS256 token signed with an RS256 public key) are refused.

A token that fails verification is ``InvalidToken`` (401). A token that verifies but
grants no role this product knows is ``Forbidden`` (403).

A verified token is remembered (LRU-bounded, keyed by the whole signed string) until
its ``exp`` plus the leeway: a long-poll client sends the same token with every poll,
and checking its signature again each time was a tenth of the fanout's wake-up CPU.
The expiry is still checked on every use; a token that failed is never remembered.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from service_kit.errors import ApiError

Role = Literal["ADMIN", "MANAGER"]
ROLES: tuple[str, ...] = ("ADMIN", "MANAGER")
PropertyIds = Annotated[
    list[Annotated[int, Field(ge=1, strict=True)]], Field(max_length=1000)
]
_SYMMETRIC = {"HS256", "HS384", "HS512"}
_ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"}


class InvalidToken(ApiError):
    """The token is missing, malformed, badly signed, expired or not yet valid."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, "invalid_token", detail)
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


class Forbidden(ApiError):
    """The token is valid but does not allow this action or property."""

    def __init__(self, detail: str) -> None:
        super().__init__(403, "forbidden", detail)


class AuthSettings(BaseSettings):
    """How tokens are verified; read from ``JWT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="JWT_", extra="ignore")

    algorithms: list[str] = ["HS256"]
    secret: Annotated[str, Field(min_length=32)] = (
        "local-dev-secret-change-me-0123456789"
    )
    public_key: str | None = None
    leeway_s: Annotated[float, Field(ge=0, le=300)] = 5.0
    audience: str | None = None
    issuer: str | None = None


class Claims(BaseModel):
    """The verified claims of a request's token."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    sub: Annotated[str, Field(min_length=1, max_length=128)]
    org_id: Annotated[int, Field(alias="orgId", ge=1, le=2**53, strict=True)]
    role: str | None = None
    property_ids: PropertyIds | None = Field(default=None, alias="propertyIds")
    exp: float

    def may_see_property(self, property_id: int) -> bool:
        """True when this user may see events and records of the property."""
        return self.property_ids is None or property_id in self.property_ids

    def require_property(self, property_id: int) -> None:
        """Raise ``Forbidden`` unless the user may see the property."""
        if not self.may_see_property(property_id):
            raise Forbidden(f"property {property_id} is not allowed for this user")

    def require_role(self, *roles: str) -> None:
        """Raise ``Forbidden`` unless the user has one of the roles."""
        if self.role is None or self.role not in roles:
            raise Forbidden(f"role {self.role} may not do this")


class TokenVerifier:
    """Verifies bearer tokens against the configured key and algorithms.

    Up to ``cache_size`` verified tokens are remembered until they expire (0: none);
    ``clock`` (epoch seconds) is injectable for tests.
    """

    def __init__(
        self,
        settings: AuthSettings,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        algorithms = [name.upper() for name in settings.algorithms]
        unknown = set(algorithms) - _SYMMETRIC - _ASYMMETRIC
        if not algorithms or unknown:
            raise ValueError(f"JWT_ALGORITHMS has unsupported values: {unknown}")
        if set(algorithms) & _SYMMETRIC and set(algorithms) & _ASYMMETRIC:
            raise ValueError("JWT_ALGORITHMS must not mix HMAC and public-key kinds")
        self._algorithms = algorithms
        self._settings = settings
        if set(algorithms) & _ASYMMETRIC:
            if not settings.public_key:
                raise ValueError("JWT_PUBLIC_KEY is required for public-key algorithms")
            self._key: Any = settings.public_key
        else:
            self._key = settings.secret
        self._cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[str, Claims] = OrderedDict()

    def verify(self, token: str) -> Claims:
        """Verify a token and return its claims, or raise ``InvalidToken``."""
        claims = self._verified.get(token)
        if claims is not None:
            if self._clock() < claims.exp + self._settings.leeway_s:
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
            raise InvalidToken("token expired")
        claims = self._verify_signed(token)
        if self._cache_size > 0:
            self._verified[token] = claims
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return claims

    def _verify_signed(self, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                leeway=self._settings.leeway_s,
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("token not yet valid") from exc
        except jwt.DecodeError as exc:
            raise InvalidToken("token is malformed or its signature is wrong") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"token rejected: {exc}") from exc
        try:
            claims = Claims.model_validate(payload)
        except ValidationError as exc:
            fields = ", ".join(str(err["loc"][0]) for err in exc.errors())
            raise InvalidToken(f"token claims invalid: {fields}") from exc
        if claims.role not in ROLES:
            raise Forbidden("token grants no known role")
        return claims


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header, or ``InvalidToken``."""
    if not authorization:
        raise InvalidToken("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("authorization is not a bearer token")
    return token.strip()


def mint_token(
    settings: AuthSettings,
    *,
    org_id: int,
    role: str,
    user_id: str,
    property_ids: list[int] | None = None,
    ttl_s: int = 3600,
    private_key: str | None = None,
) -> str:
    """Sign a token for local use and tests (HMAC secret, or a private key)."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": user_id,
        "orgId": org_id,
        "role": role,
        "iat": now,
        "exp": now + ttl_s,
    }
    if property_ids is not None:
        payload["propertyIds"] = property_ids
    algorithm = settings.algorithms[0].upper()
    key = private_key if algorithm in _ASYMMETRIC else settings.secret
    if key is None:
        raise ValueError("a private key is needed to sign with " + algorithm)
    return jwt.encode(payload, key, algorithm=algorithm)
