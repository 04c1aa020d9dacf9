"""Every exception class of the installed anthropic SDK maps to a ModelError kind.

The walk finds the classes by itself (``__subclasses__`` from ``AnthropicError`` plus every
exception class ``anthropic`` exports, after importing every SDK module), so the check holds
for SDK versions newer than this file: a class the SDK adds resolves through its base class and
its HTTP status, with no entry of its own.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import typing
import warnings

import anthropic
import anthropic._exceptions
import httpx2
import pytest

from stageflow.errors import ModelError, ModelErrorKind
from stageflow.models.anthropic import NAMED_KINDS, STATUS_KINDS, classify, map_error

KINDS = set(typing.get_args(ModelErrorKind))


def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | subclasses(sub)
    return found


def _import_every_sdk_module() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in pkgutil.walk_packages(anthropic.__path__, "anthropic."):
            try:
                importlib.import_module(module.name)
            except ImportError:  # optional extras (aiohttp) that are not installed
                continue


def sdk_exception_classes() -> set[type[BaseException]]:
    """Every exception class the SDK defines (all its modules imported first)."""
    _import_every_sdk_module()
    classes = {anthropic.AnthropicError} | subclasses(anthropic.AnthropicError)
    exported = [getattr(anthropic, name, None) for name in anthropic.__all__]
    for value in [*exported, *vars(anthropic).values(), *vars(anthropic._exceptions).values()]:
        if isinstance(value, type) and issubclass(value, BaseException):
            classes.add(value)
    # only the SDK's own classes: builtins it re-exports and subclasses tests define are not ours
    return {
        c
        for c in classes
        if c.__module__.split(".")[0] == "anthropic" and not c.__module__.startswith("tests")
    }


CLASSES = sorted(sdk_exception_classes(), key=lambda c: (c.__module__, c.__qualname__))
REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def _status_of(cls: type[BaseException]) -> int:
    status = getattr(cls, "status_code", None)
    if isinstance(status, int):
        return status
    return 500 if issubclass(cls, anthropic.InternalServerError) else 400


def instance(cls: type[BaseException], headers: dict[str, str] | None = None) -> BaseException:
    """An instance of ``cls`` as the SDK would raise it (status errors with a retry-after)."""
    if issubclass(cls, anthropic.APIStatusError):
        hdrs = {"retry-after": "1", "request-id": "req_t"} if headers is None else headers
        response = httpx2.Response(_status_of(cls), headers=hdrs, request=REQUEST)
        body = {"type": "error", "error": {"type": "some_error", "message": "boom"}}
        return cls("boom", response=response, body=body)
    if issubclass(cls, anthropic.APIResponseValidationError):
        return cls(httpx2.Response(200, request=REQUEST), body={"not": "a message"})
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
        anthropic.RateLimitError,
        anthropic.AuthenticationError,
    ):
        assert cls in CLASSES


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_sdk_exception_class_resolves_to_a_kind(
    cls: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    exc = instance(cls)
    with caplog.at_level(logging.WARNING):
        err = map_error(exc)
    assert isinstance(err, ModelError)
    assert err.kind in KINDS
    assert (err.kind, err.retryable) == classify(exc)
    assert caplog.records == []  # resolved by design, not by a fallback that complains
    if isinstance(exc, anthropic.APIStatusError):
        assert err.status_code == exc.status_code
        assert "boom" in str(err)


def _plain_status_classes() -> list[type[anthropic.APIStatusError]]:
    """Status classes that are neither named refinements nor read by the body."""
    return [
        c
        for c in CLASSES
        if issubclass(c, anthropic.APIStatusError)
        and not any(k.__name__ in NAMED_KINDS for k in c.__mro__)
        and _status_of(c) in STATUS_KINDS
    ]


def test_most_status_classes_are_plain() -> None:
    assert len(_plain_status_classes()) > 100


@pytest.mark.parametrize("cls", _plain_status_classes(), ids=lambda c: c.__name__)
def test_a_status_class_gets_the_kind_of_its_status(cls: type[anthropic.APIStatusError]) -> None:
    assert classify(instance(cls)) == STATUS_KINDS[_status_of(cls)]


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, "bad_request", False),
        (401, "auth", False),
        (402, "spend_limit", False),
        (403, "auth", False),
        (404, "bad_request", False),
        (408, "connection", True),
        (413, "bad_request", False),
        (429, "rate_limit", True),
        (500, "server", True),
        (501, "server", False),
        (502, "server", True),
        (503, "overloaded", True),
        (504, "server", True),
        (529, "overloaded", True),
    ],
)
def test_a_class_newer_than_the_sdk_resolves_through_its_status(
    status: int, kind: str, retryable: bool
) -> None:
    base: type[anthropic.APIStatusError] = (
        anthropic.InternalServerError if status >= 500 else anthropic.APIStatusError
    )

    class FutureError(base):  # type: ignore[misc, valid-type]
        pass

    response = httpx2.Response(status, headers={"retry-after": "1"}, request=REQUEST)
    body = {"type": "error", "error": {"type": "brand_new_error", "message": "m"}}
    err = map_error(FutureError("m", response=response, body=body))
    assert (err.kind, err.retryable, err.status_code) == (kind, retryable, status)


def test_a_subclass_of_a_named_class_keeps_its_meaning() -> None:
    class FutureOverloadedError(anthropic.OverloadedError):
        pass

    spend = getattr(anthropic, "EnforcedSpendLimitReachedError", None)
    err = map_error(instance(FutureOverloadedError))
    assert (err.kind, err.retryable) == ("overloaded", True)
    if spend is not None:

        class FutureSpendError(spend):  # type: ignore[misc, valid-type]
            pass

        assert classify(instance(FutureSpendError)) == ("spend_limit", False)


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


@pytest.mark.parametrize(("header", "retryable"), [("true", True), ("false", False)])
def test_x_should_retry_decides_whether_a_retry_can_help(header: str, retryable: bool) -> None:
    conflict = status_error(anthropic.ConflictError, 409, headers={"x-should-retry": header})
    assert map_error(conflict).retryable is retryable
    server = status_error(anthropic.InternalServerError, 500, headers={"x-should-retry": header})
    assert map_error(server).retryable is retryable


def test_x_should_retry_true_does_not_make_a_spend_limit_retryable() -> None:
    exc = status_error(anthropic.RateLimitError, 429, headers={"x-should-retry": "true"})
    assert (map_error(exc).kind, map_error(exc).retryable) == ("spend_limit", False)


def test_connection_and_timeout_errors_are_retryable_connection_failures() -> None:
    for cls in (anthropic.APIConnectionError, anthropic.APITimeoutError):
        err = map_error(cls(request=REQUEST))
        assert (err.kind, err.retryable) == ("connection", True)


def _raised_from(cause: BaseException, cls: type[anthropic.APIConnectionError]) -> ModelError:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise cls(request=REQUEST) from inner
    except anthropic.APIConnectionError as exc:
        return map_error(exc)


def test_a_request_that_may_have_been_processed_is_marked_maybe_billed() -> None:
    # a timeout or a dropped connection: the provider may have processed (billed) it
    assert _raised_from(httpx2.ReadTimeout("slow"), anthropic.APITimeoutError).maybe_billed
    assert _raised_from(
        httpx2.RemoteProtocolError("gone"), anthropic.APIConnectionError
    ).maybe_billed
    assert map_error(anthropic.APIConnectionError(request=REQUEST)).maybe_billed
    # an unreadable reply came from a request it processed
    response = httpx2.Response(200, request=REQUEST)
    invalid = anthropic.APIResponseValidationError(response=response, body=None)
    assert map_error(invalid).maybe_billed


def test_a_refused_or_never_sent_request_is_not_billed() -> None:
    assert not _raised_from(
        httpx2.ConnectError("refused"), anthropic.APIConnectionError
    ).maybe_billed
    assert not _raised_from(httpx2.ConnectTimeout("no"), anthropic.APITimeoutError).maybe_billed
    for status in (400, 429, 500, 529):
        err = map_error(status_error(anthropic.APIStatusError, status))
        assert not err.maybe_billed, status
