"""The migration URL: psycopg scheme, connect timeout, refusals."""

from __future__ import annotations

import pytest
from service_kit.database import psycopg_url


def test_a_postgresql_url_gets_the_psycopg_scheme_and_a_connect_timeout() -> None:
    url = psycopg_url("postgresql://app@db:5432/checkin?sslmode=disable", 0.5)

    assert url == (
        "postgresql+psycopg://app@db:5432/checkin?sslmode=disable&connect_timeout=2"
    )


def test_a_connect_timeout_the_url_sets_is_kept() -> None:
    url = psycopg_url("postgres://db/checkin?connect_timeout=7", 30)

    assert url == "postgresql+psycopg://db/checkin?connect_timeout=7"


@pytest.mark.parametrize("url", ["mysql://db/checkin", "db/checkin", ""])
def test_a_url_that_is_not_postgresql_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        psycopg_url(url)
