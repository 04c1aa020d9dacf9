"""Every exception class of the anthropic SDK has its own entry in ERROR_KINDS.

The walk finds the classes by themselves (``__subclasses__`` from ``AnthropicError`` plus every
exception class ``anthropic`` exports), so an SDK upgrade that adds one fails here until the
map says what it means.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import warnings
from collections.abc import Iterable, Mapping

import anthropic
import anthropic._exceptions
import httpx2
import pytest

from stageflow.errors import ModelError
from stageflow.subagents.anthropic_client import ERROR_KINDS, map_error


def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | subclasses(sub)
    return found


def sdk_exception_classes() -> set[type[BaseException]]:
    """Every exception class the SDK defines that is loaded now."""
    classes = {anthropic.AnthropicError} | subclasses(anthropic.AnthropicError)
    exported = [getattr(anthropic, name, None) for name in anthropic.__all__]
    for value in [*exported, *vars(anthropic).values(), *vars(anthropic._exceptions).values()]:
        if isinstance(value, type) and issubclass(value, BaseException):
            classes.add(value)
    # only the SDK's own classes: builtins it re-exports and subclasses tests define are not ours
    return {c for c in classes if c.__module__.split(".")[0] == "anthropic"}


def missing_entries(
    kinds: Mapping[type[BaseException], object], classes: Iterable[type[BaseException]]
) -> list[type[BaseException]]:
    """The classes without an entry of their own (an ancestor's entry does not count)."""
    return sorted((c for c in classes if c not in kinds), key=lambda c: c.__qualname__)


CLASSES = sorted(sdk_exception_classes(), key=lambda c: (c.__module__, c.__qualname__))
REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def instance(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` as the SDK would raise it (status errors with a retry-after)."""
    if issubclass(cls, anthropic.APIStatusError):
        status = getattr(cls, "status_code", None)
        if not isinstance(status, int):
            status = 500 if issubclass(cls, anthropic.InternalServerError) else 400
        response = httpx2.Response(
            status, headers={"retry-after": "1", "request-id": "req_t"}, request=REQUEST
        )
        body = {"type": "error", "error": {"type": "some_error", "message": "boom"}}
        return cls("boom", response=response, body=body)
    if issubclass(cls, anthropic.APIResponseValidationError):
        return cls(httpx2.Response(200, request=REQUEST), body={"not": "a message"})
    if issubclass(cls, anthropic.APITimeoutError):
        return cls(request=REQUEST)
    if issubclass(cls, anthropic.APIConnectionError):
        return cls(request=REQUEST)
    if issubclass(cls, anthropic.APIError):
        return cls("boom", REQUEST, body=None)
    try:
        return cls("boom")
    except TypeError:  # helpers with their own constructors; map_error only needs the type
        exc = cls.__new__(cls)
        Exception.__init__(exc, "boom")
        return exc


def test_the_walk_finds_the_sdk_classes() -> None:
    # guards the walk itself: an empty walk would make the coverage test pass vacuously
    assert len(CLASSES) > 100
    for cls in (
        anthropic.AnthropicError,
        anthropic.OverloadedError,
        anthropic.APITimeoutError,
        anthropic.EnforcedSpendLimitReachedError,
        anthropic.IdentityTokenFileError,
    ):
        assert cls in CLASSES


def test_every_sdk_exception_class_has_its_own_entry() -> None:
    assert missing_entries(ERROR_KINDS, sdk_exception_classes()) == []


def test_the_coverage_check_reports_a_removed_entry() -> None:
    kinds = dict(ERROR_KINDS)
    del kinds[anthropic.OverloadedError]
    del kinds[anthropic.RampLimitExceededError]
    assert missing_entries(kinds, sdk_exception_classes()) == [
        anthropic.OverloadedError,
        anthropic.RampLimitExceededError,
    ]


def test_classes_from_lazily_imported_sdk_modules_have_entries_too() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in pkgutil.walk_packages(anthropic.__path__, "anthropic."):
            try:
                importlib.import_module(module.name)
            except ImportError:  # optional extras (aiohttp) that are not installed
                continue
    assert missing_entries(ERROR_KINDS, sdk_exception_classes()) == []


def test_every_entry_is_an_sdk_exception_class() -> None:
    assert {c.__module__.split(".")[0] for c in ERROR_KINDS} == {"anthropic"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_map_error_gives_the_entrys_kind_and_retryable(cls: type[BaseException]) -> None:
    err = map_error(instance(cls))
    assert isinstance(err, ModelError)
    assert (err.kind, err.retryable) == ERROR_KINDS[cls]
    if isinstance(instance(cls), anthropic.APIStatusError):
        assert err.status_code == getattr(instance(cls), "status_code", None)
        assert "boom" in str(err)


# -- refinements beyond the class ------------------------------------------------------------


def status_error(
    cls: type[anthropic.APIStatusError],
    status: int,
    *,
    headers: dict[str, str] | None = None,
    kind: str = "api_error",
) -> anthropic.APIStatusError:
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    body = {"type": "error", "error": {"type": kind, "message": "m"}}
    return cls("m", response=response, body=body)


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
def test_a_rate_limit_with_retry_after_is_retryable(header: str) -> None:
    err = map_error(status_error(anthropic.RateLimitError, 429, headers={header: "3"}))
    assert (err.kind, err.retryable) == ("rate_limit", True)


def test_a_rate_limit_without_retry_after_is_a_spend_limit() -> None:
    err = map_error(status_error(anthropic.RateLimitError, 429))
    assert (err.kind, err.retryable, err.status_code) == ("spend_limit", False, 429)
    assert "spend or usage limit" in str(err)


def test_a_spend_limit_class_stays_a_spend_limit_even_with_retry_after() -> None:
    exc = status_error(anthropic.EnforcedSpendLimitReachedError, 429, headers={"retry-after": "9"})
    assert (map_error(exc).kind, map_error(exc).retryable) == ("spend_limit", False)


@pytest.mark.parametrize(
    ("status", "body_type", "kind", "retryable"),
    [
        (502, "api_error", "server", True),
        (200, "overloaded_error", "overloaded", True),  # an error event inside a stream
        (418, "authentication_error", "auth", False),
        (418, "something_new", "bad_request", False),
    ],
)
def test_a_status_without_its_own_class_is_read_by_status_and_body(
    status: int, body_type: str, kind: str, retryable: bool
) -> None:
    err = map_error(status_error(anthropic.APIStatusError, status, kind=body_type))
    assert (err.kind, err.retryable, err.status_code) == (kind, retryable, status)


def test_the_sdks_missing_credentials_type_error_is_an_auth_failure() -> None:
    exc = TypeError(
        '"Could not resolve authentication method. Expected one of api_key, auth_token, '
        'or credentials to be set. Or for the `Authorization` header to be explicitly omitted"'
    )
    err = map_error(exc)
    assert (err.kind, err.retryable) == ("auth", False)
    assert "ANTHROPIC_API_KEY" in str(err)


def test_an_unrelated_exception_is_other_and_not_retryable() -> None:
    err = map_error(TypeError("unsupported operand"))
    assert (err.kind, err.retryable) == ("other", False)


def test_a_model_error_passes_through_unchanged() -> None:
    original = ModelError("x", retryable=True, kind="connection")
    assert map_error(original) is original


def test_a_class_newer_than_the_map_uses_its_nearest_ancestor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FutureOverloadedError(anthropic.OverloadedError):
        pass

    exc = status_error(FutureOverloadedError, 529)
    with caplog.at_level(logging.WARNING, logger="stageflow.subagents.anthropic_client"):
        err = map_error(exc)
    assert (err.kind, err.retryable) == ("overloaded", True)
    assert "FutureOverloadedError" in caplog.text
