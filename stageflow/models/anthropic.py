"""The Anthropic Messages API boundary: the only stageflow module that imports ``anthropic``.

``AnthropicClient`` implements ``ModelClient`` on ``anthropic.AsyncAnthropic``: it sends one
non-streaming ``messages.create`` per ``ModelCall`` and converts the reply to plain dict blocks
and ``RawUsage``. It retries an error status the API answered (429 with ``retry-after``,
408/409, 5xx, 529; ``x-should-retry`` decides), honouring ``retry-after``: such a request was
not billed, so the caller's budget reservation still covers the retry. It never retries a
timeout or a dropped connection, whose request may have been processed and billed: that
failure goes to the caller, which counts the reservation as spent and reserves anew for any
next try. (The SDK's own retries are off for that reason: it would re-send a billed request
under the one reservation.)

Every SDK failure leaves this module as a ``ModelError`` (``map_error``). Its kind comes from
the exception's class hierarchy and the HTTP status (``classify``), not from a list of every
class: the SDK adds classes in most releases (anthropic 2.16 added forty), and each inherits a
status class or one of the SDK's base classes, so it resolves to the right kind unnamed. A few
subclasses whose meaning differs from their status are named (``NAMED_KINDS``). Beyond the
class, the response refines the kind: a 429 without ``retry-after`` is a spend/usage limit (not
retried), ``x-should-retry`` says whether a retry can help, and the SDK's "Could not resolve
authentication method" ``TypeError`` (no credentials anywhere) is an auth failure.

The SDK retries every 429 itself, so a spend-limit 429 would be sent ``max_retries + 1`` times
(with back-off) before ``map_error`` saw it. ``_NoRetryOnSpendLimit``, a client middleware (the
SDK's public ``anthropic.Middleware``, which runs once per attempt inside the retry loop), marks
such a response ``x-should-retry: false``, the header by which the API itself tells the SDK not
to retry; the SDK then raises its usual typed error at once.

The SDK encodes the request body as UTF-8 with ``ensure_ascii=False``, so a lone surrogate in
the conversation (a ``\\ud800`` escape in the model's JSON, echoed back; a file name that is
not UTF-8 in a tool result) would raise ``UnicodeEncodeError`` before anything is sent; such a
request is sent once more with U+FFFD in place of each surrogate.

Importing this module costs over a second (the SDK is large): import it when the first stage
needs a model, never on the server's start-up path.
"""

from __future__ import annotations

import logging
import math
import random
import re
from typing import Any

import anthropic
import anyio

from stageflow.errors import ModelError, ModelErrorKind
from stageflow.models.client import Block, ModelCall, ModelReply, RawUsage

__all__ = ["AnthropicClient", "classify", "map_error"]

log = logging.getLogger(__name__)

ErrorKind = tuple[ModelErrorKind, bool]  # (kind, retryable)

AUTH: ErrorKind = ("auth", False)
BAD_REQUEST: ErrorKind = ("bad_request", False)
SPEND_LIMIT: ErrorKind = ("spend_limit", False)
RATE_LIMIT: ErrorKind = ("rate_limit", True)
OVERLOADED: ErrorKind = ("overloaded", True)
SERVER: ErrorKind = ("server", True)
SERVER_FINAL: ErrorKind = ("server", False)  # 501: the endpoint will not start working on retry
CONNECTION: ErrorKind = ("connection", True)
PROTOCOL: ErrorKind = ("protocol", False)
OTHER: ErrorKind = ("other", False)
OTHER_RETRYABLE: ErrorKind = ("other", True)

# The HTTP status decides the kind of a status error. The SDK adds subclasses picked by
# ``error.details.error_code`` in almost every release (mostly for admin and beta endpoints
# stageflow never calls); they inherit the class of their status, so they need no entry here.
STATUS_KINDS: dict[int, ErrorKind] = {
    400: BAD_REQUEST,
    401: AUTH,
    402: SPEND_LIMIT,
    403: AUTH,
    404: BAD_REQUEST,
    408: CONNECTION,
    409: BAD_REQUEST,
    412: BAD_REQUEST,
    413: BAD_REQUEST,
    422: BAD_REQUEST,
    429: RATE_LIMIT,  # map_error: without retry-after it is a spend limit
    431: BAD_REQUEST,
    499: CONNECTION,
    501: SERVER_FINAL,
    503: OVERLOADED,
    529: OVERLOADED,
}

# The few subclasses whose meaning differs from their status, by name, so that a class an SDK
# version lacks is simply not there (``getattr`` below) and a renamed one falls back to its
# status. The first class in an exception's MRO that is named here wins.
NAMED_KINDS: dict[str, ErrorKind] = {
    # 429s that will not pass by waiting, and one that will
    "ContractSpendLimitReachedError": SPEND_LIMIT,
    "EnforcedSpendLimitReachedError": SPEND_LIMIT,
    "RampLimitExceededError": RATE_LIMIT,
    # 400s that are about the key's organization, not about our request
    "OrganizationOnHoldError": AUTH,
    "ParentOrganizationRequiredError": AUTH,
    "OrganizationTypeNotSupportedError": AUTH,
    "ClaudeCodeKeyCreatorNotMemberError": AUTH,
    "BetaRequestBodyTimeoutError": CONNECTION,  # our upload stalled; a new try may get through
    "CompactionUnavailableError": OVERLOADED,
    "CMEKKeyUnreachableError": SERVER,
    "CMEKContextUnavailableError": SERVER,
    # no HTTP response
    "MutuallyExclusiveAuthError": AUTH,
}

# A status error without a status of its own above (e.g. an ``error`` event inside a 200
# stream, or a 418) is read by the body's ``error.type``.
_BODY_TYPES: dict[str, ErrorKind] = {
    "invalid_request_error": BAD_REQUEST,
    "authentication_error": AUTH,
    "permission_error": AUTH,
    "billing_error": SPEND_LIMIT,
    "not_found_error": BAD_REQUEST,
    "request_too_large": BAD_REQUEST,
    "rate_limit_error": RATE_LIMIT,
    "timeout_error": CONNECTION,
    "api_error": SERVER,
    "overloaded_error": OVERLOADED,
}

_NO_CREDENTIALS = "Could not resolve authentication method"
_KEY_HINT = "set ANTHROPIC_API_KEY to a valid key (or use STAGEFLOW_RUNNER=claude-code)"


def _named_kind(cls: type[BaseException]) -> ErrorKind | None:
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] == "anthropic" and klass.__name__ in NAMED_KINDS:
            return NAMED_KINDS[klass.__name__]
    return None


def _status_kind(exc: anthropic.APIStatusError) -> ErrorKind:
    """The kind of a status error: by status, refined by the body and the retry headers."""
    status = exc.status_code
    kind = STATUS_KINDS.get(status)
    if kind is None:
        kind = SERVER if status >= 500 else _BODY_TYPES.get(str(exc.type), BAD_REQUEST)
    if kind == RATE_LIMIT and not _has_retry_after(exc):
        kind = SPEND_LIMIT  # a 429 with no hint when to come back: a spend or usage limit
    # ``x-should-retry`` is how the API itself says whether a retry can help
    should = str(exc.response.headers.get("x-should-retry", "")).lower()
    if should in ("true", "false") and kind != SPEND_LIMIT:
        kind = (kind[0], should == "true")
    return kind


def classify(exc: BaseException) -> ErrorKind:
    """``(kind, retryable)`` for an SDK failure, through its class hierarchy and its status.

    Holds for classes a later SDK adds: they inherit a status class or one of the SDK's base
    classes (connection, response validation, credentials, retryable).
    """
    named = _named_kind(type(exc))
    if isinstance(exc, anthropic.APIStatusError):
        if named is not None and named != RATE_LIMIT:
            return named
        return _status_kind(exc)
    if named is not None:
        return named
    if isinstance(exc, anthropic.APIConnectionError):  # timeouts included
        return CONNECTION
    if isinstance(exc, anthropic.APIResponseValidationError):
        return PROTOCOL
    webhook = getattr(anthropic, "APIWebhookValidationError", None)
    if isinstance(webhook, type) and isinstance(exc, webhook):
        return PROTOCOL
    retryable = getattr(anthropic, "RetryableError", None)
    if isinstance(retryable, type) and isinstance(exc, retryable):
        return OTHER_RETRYABLE
    credentials = getattr(anthropic, "CredentialsError", None)
    if isinstance(credentials, type) and isinstance(exc, credentials):
        return AUTH
    return OTHER


def _is_missing_credentials(exc: BaseException) -> bool:
    return isinstance(exc, TypeError) and _NO_CREDENTIALS in str(exc)


def _has_retry_after(exc: anthropic.APIStatusError) -> bool:
    return _headers_say_retry_after(exc.response.headers)


def _headers_say_retry_after(headers: Any) -> bool:
    return bool(headers.get("retry-after-ms") or headers.get("retry-after"))


class _NoRetryOnSpendLimit(anthropic.Middleware):
    """Stops the SDK's retries of a 429 without ``retry-after`` (a spend or usage limit).

    Without a hint when to come back, retrying only repeats the refusal after a back-off; the
    response is marked ``x-should-retry: false``, which the SDK obeys before its own status
    rules, and ``map_error`` then classifies it as ``spend_limit``.
    """

    async def handle_async(
        self, request: anthropic.APIRequest, call_next: anthropic.AsyncCallNext
    ) -> anthropic.AsyncAPIResponse[Any]:
        response = await call_next(request)
        if response.status_code == 429 and not _headers_say_retry_after(response.headers):
            response.headers["x-should-retry"] = "false"
        return response


MAX_RETRY_DELAY = 60.0  # seconds; a longer retry-after is the engine's to wait (a stage retry)


def retry_delay(headers: Any, tried: int) -> float:
    """Seconds before retry ``tried + 1``: the API's ``retry-after-ms`` / ``retry-after``
    when it sends one (capped), else 0.5 s doubling to 8 s with a little jitter."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                value = float(raw) * scale
            except ValueError:
                continue  # an HTTP date: fall back to the back-off
            if math.isfinite(value) and value >= 0:
                return min(value, MAX_RETRY_DELAY)
    base: float = min(0.5 * 2.0**tried, 8.0)
    return base * (0.75 + random.random() * 0.25)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        text = exc.api_message or exc.message
        return f"{text}, request id {exc.request_id}" if exc.request_id else text
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, anthropic.APIConnectionError) and cause is not None:
        text = f"{text} {type(cause).__name__}: {cause}"
    return text


def _where(exc: BaseException) -> str:
    url = getattr(getattr(exc, "request", None), "url", None)
    if url is None:
        return ""
    port = f":{url.port}" if url.port else ""
    return f" at {url.scheme}://{url.host}{port}"


def map_error(exc: BaseException) -> ModelError:
    """The ``ModelError`` (kind, retryable, status, message) for an SDK failure.

    401/403 name ANTHROPIC_API_KEY; a 429 with ``retry-after`` is a retryable rate limit and
    one without is a spend/usage limit that is not retried; 529/503 are ``overloaded`` (the
    fallback model applies); connection failures are retryable.
    """
    if isinstance(exc, ModelError):
        return exc
    if _is_missing_credentials(exc):
        return ModelError(
            f"no Anthropic API credentials found: {_KEY_HINT}", retryable=False, kind="auth"
        )
    kind, retryable = classify(exc)
    status: int | None = None
    if isinstance(exc, anthropic.APIStatusError | anthropic.APIResponseValidationError):
        status = exc.status_code
    return ModelError(
        _message(kind, exc, status),
        retryable=retryable,
        status_code=status,
        kind=kind,
        maybe_billed=_maybe_billed(exc),
    )


_NEVER_SENT = ("ConnectError", "ConnectTimeout")  # httpx: no connection, nothing was sent


def _maybe_billed(exc: BaseException) -> bool:
    """Whether the provider may have processed (and billed) the failed request: not when it
    answered with an error status or the connection was never made; yes otherwise."""
    if isinstance(exc, anthropic.APIStatusError):
        return False
    if isinstance(exc, anthropic.APIConnectionError):
        cause: BaseException | None = exc.__cause__ or exc.__context__
        for _ in range(8):  # the chain is short; never follow a cycle
            if cause is None:
                break
            if type(cause).__name__ in _NEVER_SENT:
                return False
            cause = cause.__cause__ or cause.__context__
        return True
    return isinstance(exc, anthropic.APIResponseValidationError)


def _message(kind: ModelErrorKind, exc: BaseException, status: int | None) -> str:
    code = f"HTTP {status}: " if status is not None else ""
    detail = f"{code}{_detail(exc)}"
    if kind == "auth":
        return f"the Anthropic API refused the credentials ({detail}); {_KEY_HINT}"
    if kind == "spend_limit":
        return (
            f"the Anthropic API reports a spend or usage limit was reached ({detail}); not "
            "retried: raise the limit in the Anthropic Console or wait until it resets"
        )
    if kind == "rate_limit":
        return f"rate limited by the Anthropic API after retries ({detail}); try again later"
    if kind == "overloaded":
        return f"the Anthropic API is overloaded after retries ({detail})"
    if kind == "server":
        return f"Anthropic API server error ({detail})"
    if kind == "connection":
        return f"cannot reach the Anthropic API{_where(exc)} ({detail}); retry when it is back"
    if kind == "bad_request":
        hint = "; check the model id" if status == 404 else ""
        return f"the Anthropic API rejected the request ({detail}){hint}"
    if kind == "protocol":
        return f"unexpected response from the Anthropic API ({detail})"
    return f"Anthropic client error ({type(exc).__name__}: {detail})"


class AnthropicClient:
    """``ModelClient`` on ``anthropic.AsyncAnthropic``.

    ``api_key`` and ``base_url`` default to the SDK's own lookup (``ANTHROPIC_API_KEY``,
    ``ANTHROPIC_BASE_URL``, profiles). ``max_retries`` is the SDK's retry count per request.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float = 600.0,
    ) -> None:
        self._timeout = timeout
        self._retries = max(0, max_retries)
        try:
            self._client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,  # see the module docstring: retries are ours, per status
                timeout=timeout,
                middleware=[_NoRetryOnSpendLimit()],
            )
        except anthropic.AnthropicError as exc:
            raise map_error(exc) from exc

    async def send(self, call: ModelCall) -> ModelReply:
        """One ``messages.create`` request; failures raise ``ModelError`` (see ``map_error``)."""
        params: dict[str, Any] = {
            "model": call.model,
            "max_tokens": call.max_tokens,
            "messages": call.messages,
            # an explicit timeout also turns off the SDK's "streaming is required" guard,
            # which would refuse a large max_tokens before sending
            "timeout": self._timeout,
        }
        if call.system:
            params["system"] = call.system
        if call.tools:
            params["tools"] = call.tools
        for tried in range(self._retries + 1):
            try:
                return _reply(await self._create(params), call.model)
            except ModelError as err:
                status = err.__cause__
                again = tried < self._retries and err.retryable and not err.maybe_billed
                if not (again and isinstance(status, anthropic.APIStatusError)):
                    raise
                delay = retry_delay(status.response.headers, tried)
                log.info("%s; retrying in %.1fs (%d of %d)", err, delay, tried + 1, self._retries)
                await anyio.sleep(delay)
        raise AssertionError("unreachable: the last try returns or raises")

    async def _create(self, params: dict[str, Any]) -> Any:
        try:
            try:
                return await self._client.messages.create(**params)
            except UnicodeEncodeError:
                # the SDK encodes the body as UTF-8 before sending anything, and a lone
                # surrogate (model JSON echoed back, a file name that is not UTF-8) cannot be
                # encoded: send U+FFFD in its place rather than fail the attempt
                return await self._client.messages.create(**_scrubbed(params))
        except anthropic.AnthropicError as exc:
            raise map_error(exc) from exc
        except TypeError as exc:
            if _is_missing_credentials(exc):
                raise map_error(exc) from exc
            raise

    async def count_tokens(self, call: ModelCall) -> int | None:
        """The provider's count of ``call``'s input tokens (``messages/count_tokens``), or None
        when it cannot be had; used near a budget cap, where the byte bound is too coarse."""
        params: dict[str, Any] = {"model": call.model, "messages": _scrubbed(call.messages)}
        if call.system:
            params["system"] = _scrubbed(call.system)
        if call.tools:
            params["tools"] = call.tools
        try:
            counted = await self._client.messages.count_tokens(**params)
        except (anthropic.AnthropicError, TypeError) as exc:
            log.info("token count unavailable: %s", exc)
            return None
        tokens = getattr(counted, "input_tokens", None)
        return tokens if isinstance(tokens, int) else None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrubbed(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def _reply(message: Any, requested: str) -> ModelReply:
    try:
        content = [_block(block) for block in message.content]
        return ModelReply(
            content=content,
            stop_reason=message.stop_reason,
            model=str(message.model or requested),
            usage=_usage(message.usage),
            request_id=getattr(message, "_request_id", None),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise ModelError(
            f"unexpected response from the Anthropic API ({type(exc).__name__}: {exc})",
            retryable=False,
            kind="protocol",
        ) from exc


def _block(block: Any) -> Block:
    if isinstance(block, dict):
        return dict(block)
    dumped: Block = block.model_dump(mode="json", exclude_none=True)
    return dumped


def _usage(usage: Any) -> RawUsage:
    """Token counts, with cache writes split by TTL.

    Without the ``cache_creation`` breakdown every cache write counts as 5-minute (the
    default TTL); with it, any part of ``cache_creation_input_tokens`` the breakdown leaves
    out also counts as 5-minute.
    """
    written = usage.cache_creation_input_tokens or 0
    breakdown = usage.cache_creation
    write_5m = write_1h = 0
    if breakdown is not None:
        write_5m = breakdown.ephemeral_5m_input_tokens or 0
        write_1h = breakdown.ephemeral_1h_input_tokens or 0
    return RawUsage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cache_write_5m_tokens=max(write_5m, written - write_1h),
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
    )
