"""Tests for masking secrets in data and text."""

from __future__ import annotations

from typing import Any

import pytest

from framework0_errors.redact import DEFAULT_SECRET_KEYS, MASK, Redactor


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "DB_PASSWORD",
        "passwd",
        "refresh_token",
        "client_secret",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "APIKEY",
        "Authorization",
        "credentials",
        "private_key",
        "privateKey",
        "ssh-private-key",
    ],
)
def test_default_patterns_flag_secret_keys(key: str) -> None:
    """Default patterns match case-insensitively, as substrings, ignoring _ and -."""
    assert Redactor().is_secret_key(key)


@pytest.mark.parametrize("key", ["user", "host", "keyboard", "path", "timeout", 42, None])
def test_default_patterns_leave_ordinary_keys(key: object) -> None:
    """Ordinary keys (and non-string keys) are not secret."""
    assert not Redactor().is_secret_key(key)


def test_redact_mapping_masks_nested_secrets_and_copies() -> None:
    """Values under secret keys become *** at any depth; the input is left untouched."""
    args: dict[str, Any] = {
        "host": "db.local",
        "port": 5432,
        "db": {"user": "alice", "Password": "hunter22"},
        "services": [{"name": "a", "api_key": "k-12345"}, ("x", {"token": 7})],
        "credentials": {"user": "bob", "pin": "0000"},
        "flags": [True, None, 1.5],
    }
    snapshot = repr(args)
    out = Redactor().redact_mapping(args)
    assert out == {
        "host": "db.local",
        "port": 5432,
        "db": {"user": "alice", "Password": MASK},
        "services": [{"name": "a", "api_key": MASK}, ["x", {"token": MASK}]],
        "credentials": MASK,
        "flags": [True, None, 1.5],
    }
    assert repr(args) == snapshot
    assert out["db"] is not args["db"]


def test_redact_mapping_masks_known_values_in_strings() -> None:
    """Strings elsewhere in the data have known secret values masked."""
    redactor = Redactor(secret_values=["hunter22"])
    out = redactor.redact_mapping({"dsn": "postgres://alice:hunter22@db/x", "n": ["hunter22!"]})
    assert out == {"dsn": "postgres://alice:***@db/x", "n": ["***!"]}


def test_redact_text_masks_every_value() -> None:
    """Every occurrence of every known value is masked."""
    redactor = Redactor(secret_values=["hunter22", "s3cr3t-token"])
    text = "login hunter22 failed; token s3cr3t-token; again hunter22"
    assert redactor.redact_text(text) == "login *** failed; token ***; again ***"


def test_redact_text_masks_longest_value_whole() -> None:
    """A value containing another is masked whole, not leaving a tail."""
    redactor = Redactor(secret_values=["abcd", "abcdefgh"])
    assert redactor.redact_text("x abcdefgh y abcd") == "x *** y ***"


def test_redact_text_escapes_regex_characters() -> None:
    """Secret values are matched literally, whatever characters they hold."""
    redactor = Redactor(secret_values=["p@ss.w*rd(1)", "a|b|c"])
    assert redactor.redact_text("p@ss.w*rd(1) pXssXwrd(1) a|b|c abc") == "*** pXssXwrd(1) *** abc"


@pytest.mark.parametrize("value", ["", "a", "abc"])
def test_short_values_are_not_masked(value: str) -> None:
    """Values shorter than four characters are ignored: masking them would wreck text."""
    redactor = Redactor(secret_values=[value])
    assert redactor.secret_values == frozenset()
    assert redactor.redact_text("abc a x") == "abc a x"


def test_redact_text_without_values_returns_text() -> None:
    """With no known values text comes back as it is."""
    text = "nothing to hide here"
    assert Redactor().redact_text(text) is text
    assert Redactor(secret_values=["abcd"]).redact_text("") == ""


def test_for_args_collects_values_under_secret_keys() -> None:
    """for_args gathers secret values from nested args, numbers included, so text is masked."""
    args = {
        "db": {"password": "hunter22", "user": "alice"},
        "services": [{"api_key": "k-12345"}],
        "credentials": {"login": "bobby", "pin": 987654, "on": True, "tags": ["tag-one"]},
        "token": None,
        "note": "public",
    }
    redactor = Redactor.for_args(args)
    assert redactor.secret_values == {"hunter22", "k-12345", "bobby", "987654", "tag-one"}
    message = "auth for bobby with hunter22 and k-12345 failed (pin 987654, user alice)"
    assert (
        redactor.redact_text(message)
        == "auth for *** with *** and *** failed (pin ***, user alice)"
    )


def test_for_args_adds_extra_values_and_key_patterns() -> None:
    """Extra values are masked too; custom key patterns replace the defaults."""
    redactor = Redactor.for_args(
        {"pin_code": "12345678", "password": "not-secret-here"},
        extra_values=["env-secret-1"],
        key_patterns=["pin"],
    )
    assert redactor.secret_values == {"12345678", "env-secret-1"}
    assert redactor.key_patterns == ("pin",)
    assert redactor.redact_mapping({"password": "x", "pin": "y"}) == {"password": "x", "pin": MASK}


def test_collect_values_walks_sets_and_tuples() -> None:
    """Values inside sets and tuples under secret keys are collected."""
    found = Redactor().collect_values({"secrets": ({"alpha-1"}, ("beta-2",)), "x": "gamma-3"})
    assert found == {"alpha-1", "beta-2"}


def test_with_values_returns_a_new_redactor() -> None:
    """with_values adds values without changing the original."""
    base = Redactor(secret_values=["first-1"])
    more = base.with_values(["second-2"])
    assert base.secret_values == {"first-1"}
    assert more.secret_values == {"first-1", "second-2"}
    assert more.key_patterns == DEFAULT_SECRET_KEYS


def test_repr_never_shows_values() -> None:
    """A redactor's repr counts its values but never shows them."""
    text = repr(Redactor(secret_values=["hunter22"]))
    assert "hunter22" not in text
    assert "<1>" in text


def test_key_patterns_must_not_be_one_string() -> None:
    """Passing one string as key_patterns is refused (it would match single letters)."""
    with pytest.raises(TypeError, match="sequence of strings"):
        Redactor(key_patterns="password")


def test_empty_key_pattern_is_ignored() -> None:
    """An empty pattern does not make every key secret."""
    assert not Redactor(key_patterns=["", "-"]).is_secret_key("host")
