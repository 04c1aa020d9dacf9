"""The Anthropic Messages API boundary: the only stageflow module that imports ``anthropic``.

``AnthropicClient`` implements ``ModelClient`` on ``anthropic.AsyncAnthropic``: it sends one
non-streaming ``messages.create`` per ``ModelCall`` (the SDK retries 408/409/429/5xx and
connection failures itself, honouring ``retry-after``) and converts the reply to plain dict
blocks and ``RawUsage``.

Every SDK failure leaves this module as a ``ModelError`` (``map_error``). ``ERROR_KINDS`` gives
every exception class the SDK defines its own ``(kind, retryable)`` entry, so an SDK upgrade
that adds a class fails ``tests/subagents/test_error_map.py`` until someone decides what it
means. Beyond the class, two facts refine the kind: a 429 without ``retry-after`` is a
spend/usage limit (not retried), and the SDK's "Could not resolve authentication method"
``TypeError`` (no credentials anywhere) is an auth failure.

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
import re
from typing import Any

import anthropic
from anthropic import types as _t
from anthropic._response import StreamAlreadyConsumed
from anthropic.lib._extras._common import MissingDependencyError
from anthropic.lib.foundry import MutuallyExclusiveAuthError
from anthropic.lib.tools._toolsets import _base as _toolset_base
from anthropic.lib.tools._toolsets import _browser as _toolset_browser
from anthropic.lib.tools._toolsets import _errors as _toolset_errors
from anthropic.types import beta as _beta
from anthropic.types import organization as _org
from anthropic.types.beta import environments as _beta_env
from anthropic.types.beta import organization as _beta_org
from anthropic.types.beta.organization import claude_code as _beta_cc

from stageflow.errors import ModelError, ModelErrorKind
from stageflow.subagents.model_client import Block, ModelCall, ModelReply, RawUsage

__all__ = ["ERROR_KINDS", "AnthropicClient", "map_error"]

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

# One entry per SDK exception class (anthropic 2.11), grouped by HTTP status. Subclasses that
# the SDK picks by ``error.details.error_code`` mostly belong to admin/beta endpoints stageflow
# never calls; they are listed so that the map stays total and every new class is a decision.
ERROR_KINDS: dict[type[BaseException], ErrorKind] = {
    anthropic.AnthropicError: OTHER,
    anthropic.APIError: OTHER,
    anthropic.APIResponseValidationError: PROTOCOL,
    anthropic.APIWebhookValidationError: PROTOCOL,
    anthropic.APIStatusError: BAD_REQUEST,  # an unlisted status; map_error refines (>= 500 ...)
    # 400
    anthropic.BadRequestError: BAD_REQUEST,
    _beta.BetaInvalidMetadataError: BAD_REQUEST,
    _beta.BetaEnvironmentArchivedError: BAD_REQUEST,
    _beta.BetaInvalidConfigTypeChangeError: BAD_REQUEST,
    _org.AlreadyMemberError: BAD_REQUEST,
    _org.KeyProfileMismatchError: BAD_REQUEST,
    _org.InviteAlreadyExistsError: BAD_REQUEST,
    _org.EmailDomainNotAllowedError: BAD_REQUEST,
    _org.CannotRemoveLastMemberError: BAD_REQUEST,
    _org.OrgAPIKeyLimitExceededError: BAD_REQUEST,
    _org.WorkspacePolicyViolationError: BAD_REQUEST,
    _org.ExternalKeyValidationFailedError: BAD_REQUEST,
    _org.RBACGroupGrantsOwnerAccessError: BAD_REQUEST,
    _org.WorkspaceMemberLimitExceededError: BAD_REQUEST,
    _org.ExternalKeyInWorkspacePolicyError: BAD_REQUEST,
    _org.WorkspaceAPIKeyLimitExceededError: BAD_REQUEST,
    _org.ExternalKeyValidationTimedOutError: BAD_REQUEST,
    _org.RBACGroupOwnerAccessUnconfirmedError: BAD_REQUEST,
    _org.CannotInviteEmailsWithUnverifiedDomainsError: BAD_REQUEST,
    _beta_org.BetaScanFailedError: BAD_REQUEST,
    _beta_org.BetaBundleOnCallError: BAD_REQUEST,
    _beta_org.BetaCannotSignOutSelfError: BAD_REQUEST,
    _beta_org.BetaCannotSignOutPrimaryOwnerError: BAD_REQUEST,
    _beta_org.BetaBundleAttachmentNotSupportedError: BAD_REQUEST,
    _beta_org.BetaSlackChannelSetUpSettingsRefusedError: BAD_REQUEST,
    _beta_cc.BetaCMEKFeatureUnsupportedError: BAD_REQUEST,
    _beta_cc.BetaRBACGroupOrderLimitExceededError: BAD_REQUEST,
    _beta_cc.BetaSettingsHistoryLimitExceededError: BAD_REQUEST,
    _beta_cc.BetaSettingsDocumentLimitExceededError: BAD_REQUEST,
    anthropic.CMEKKeyDisabledError: BAD_REQUEST,
    anthropic.OrganizationOnHoldError: AUTH,  # the key's organization may not use the API
    anthropic.CMEKKeyNetworkBlockedError: BAD_REQUEST,
    anthropic.ClaudeCodeVersionTooOldError: BAD_REQUEST,
    anthropic.ParentOrganizationRequiredError: AUTH,
    anthropic.RequestBodyEncodingInvalidError: BAD_REQUEST,
    anthropic.OrganizationTypeNotSupportedError: AUTH,
    anthropic.RequestBodyEncodingUnsupportedError: BAD_REQUEST,
    anthropic.ClaudeCodeKeyCreatorNotMemberError: AUTH,
    _t.ToolNameConflictError: BAD_REQUEST,
    _t.FileNotDownloadableError: BAD_REQUEST,
    _t.UserProfileRequiredError: BAD_REQUEST,
    _t.StorageQuotaExceededError: BAD_REQUEST,
    _t.UserProfileNotFoundError: BAD_REQUEST,
    _t.BetaUnsupportedCharsetError: BAD_REQUEST,
    _t.ThreadAlreadyContinuedError: BAD_REQUEST,
    _t.BetaRequestBodyTimeoutError: CONNECTION,  # our upload stalled; a new try may get through
    _t.OrgMemberLimitExceededError: BAD_REQUEST,
    _t.ThreadContinueInFlightError: BAD_REQUEST,
    _t.ToolReferenceUnresolvedError: BAD_REQUEST,
    _t.CompactionBlockAmbiguousError: BAD_REQUEST,
    _t.CompactionBlockMisplacedError: BAD_REQUEST,
    _t.CompactionIncompleteTurnError: BAD_REQUEST,
    _t.ThreadUnsupportedRequestError: BAD_REQUEST,
    _t.CompactionContentMismatchError: BAD_REQUEST,
    _t.ThreadFingerprintMismatchError: BAD_REQUEST,
    _t.CompactionSignatureInvalidError: BAD_REQUEST,
    _t.AvailableToolsLimitExceededError: BAD_REQUEST,
    _t.CompactionNothingToSummarizeError: BAD_REQUEST,
    _t.CompactionToolChangesMismatchError: BAD_REQUEST,
    _t.CompactionTooManyToolReferencesError: BAD_REQUEST,
    _t.BetaOrganizationNotEnrolledInBetaError: BAD_REQUEST,
    # 401, 402, 403
    anthropic.AuthenticationError: AUTH,
    anthropic.PaymentRequiredError: SPEND_LIMIT,
    anthropic.LinkedOrganizationBillingUnavailableError: SPEND_LIMIT,
    anthropic.LinkedOrganizationSpendLimitReachedError: SPEND_LIMIT,
    anthropic.PermissionDeniedError: AUTH,
    _beta.BetaEnvironmentCreateDisabledError: AUTH,
    _beta.BetaEnvironmentUpdateDisabledError: AUTH,
    _beta_org.BetaAPIKeyScopeMissingError: AUTH,
    _beta_org.BetaCannotSignOutOwnerError: AUTH,
    _beta_org.BetaClaudeTagWritesNotEnabledError: AUTH,
    _beta_org.BetaCannotSignOutManagedMemberError: AUTH,
    _beta_org.BetaCannotSignOutMembershipAdminError: AUTH,
    _beta_org.BetaCannotSignOutPrivilegedMemberError: AUTH,
    _beta_org.BetaComplianceConfigurationRestrictedError: AUTH,
    _beta_org.BetaSpendLimitsAdminAPIWritesNotEnabledError: AUTH,
    _beta_org.BetaOrganizationLevelScopedAPIKeyRequiredError: AUTH,
    anthropic.SandboxEgressRestrictedError: AUTH,
    _t.UserProfileNotBillableError: SPEND_LIMIT,
    _t.UserProfileBillingNotAuthorizedError: SPEND_LIMIT,
    # 404
    anthropic.NotFoundError: BAD_REQUEST,
    _beta.BetaEnvironmentNotFoundError: BAD_REQUEST,
    _beta_org.BetaRBACGroupNotFoundError: BAD_REQUEST,
    _beta_org.BetaSlackChannelSetUpEnvironmentNotFoundError: BAD_REQUEST,
    _beta_cc.BetaRBACGroupManagedSettingsNotFoundError: BAD_REQUEST,
    _t.FileExpiredError: BAD_REQUEST,
    _t.ThreadNotFoundError: BAD_REQUEST,
    _t.RBACRoleNotFoundError: BAD_REQUEST,
    # 408, 409, 412, 413, 422
    anthropic.RequestTimeoutError: CONNECTION,
    anthropic.ConflictError: BAD_REQUEST,
    _org.ExternalKeyChangedError: BAD_REQUEST,
    _beta_org.BetaScanPendingError: BAD_REQUEST,
    _beta_org.BetaSkillNameTakenError: BAD_REQUEST,
    _beta_org.BetaPluginNameTakenError: BAD_REQUEST,
    _beta_org.BetaSlackChannelSetUpSettingsConflictError: BAD_REQUEST,
    _t.ConcurrentMembershipChangeError: BAD_REQUEST,
    _t.SkillReadBlockedUndecryptableError: BAD_REQUEST,
    anthropic.PreconditionFailedError: BAD_REQUEST,
    _beta_env.BetaHeartbeatPreconditionFailedError: BAD_REQUEST,
    anthropic.ContentTooLargeError: BAD_REQUEST,
    anthropic.RequestBodyTooLargeAfterDecodingError: BAD_REQUEST,
    anthropic.UnprocessableEntityError: BAD_REQUEST,
    # 429 (map_error: a RateLimitError without retry-after is a spend limit)
    anthropic.RateLimitError: RATE_LIMIT,
    anthropic.RampLimitExceededError: RATE_LIMIT,  # usage grew too fast: slows, then passes
    anthropic.ContractSpendLimitReachedError: SPEND_LIMIT,
    anthropic.EnforcedSpendLimitReachedError: SPEND_LIMIT,
    # 431, 499
    anthropic.RequestHeaderFieldsTooLargeError: BAD_REQUEST,
    anthropic.ClientClosedRequestError: CONNECTION,
    # 5xx
    anthropic.InternalServerError: SERVER,
    anthropic.HTTPNotImplementedError: SERVER_FINAL,
    anthropic.ServiceUnavailableError: OVERLOADED,
    _beta_org.BetaRegistrationPendingError: SERVER,
    anthropic.CMEKKeyUnreachableError: SERVER,
    anthropic.CMEKContextUnavailableError: SERVER,
    anthropic.GatewayTimeoutError: SERVER,
    anthropic.OverloadedError: OVERLOADED,
    _t.CompactionUnavailableError: OVERLOADED,
    # no HTTP response
    anthropic.APIConnectionError: CONNECTION,
    anthropic.APITimeoutError: CONNECTION,
    anthropic.RetryableError: OTHER_RETRYABLE,
    anthropic.CredentialsError: AUTH,
    anthropic.IdentityTokenFileError: AUTH,
    anthropic.WorkloadIdentityError: AUTH,
    MutuallyExclusiveAuthError: AUTH,
    StreamAlreadyConsumed: OTHER,
    MissingDependencyError: OTHER,
    # misuse of the SDK's tool-runner helpers (stageflow does not use them)
    _toolset_errors.ToolsetUsageError: OTHER,
    _toolset_errors.ToolsetConfigError: OTHER,
    _toolset_errors.ToolsetContractError: OTHER,
    _toolset_errors.ToolsetsFixedError: OTHER,
    _toolset_errors.ToolsetClosedError: OTHER,
    _toolset_base.NestedCallError: OTHER,
    _toolset_base.AsyncOnSyncToolsetError: OTHER,
    _toolset_base.SyncOnAsyncToolsetError: OTHER,
    _toolset_browser.BrowserStateError: OTHER,
}

# A status error the SDK has no class for (e.g. an ``error`` event inside a 200 stream) is read
# by the body's ``error.type``.
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


def _kind_of(cls: type[BaseException]) -> ErrorKind:
    """The class's own entry, else its nearest mapped ancestor's (an SDK newer than the map)."""
    for klass in cls.__mro__:
        if klass in ERROR_KINDS:
            if klass is not cls:
                log.warning("no ERROR_KINDS entry for %s; using %s's", cls, klass.__name__)
            return ERROR_KINDS[klass]
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
    kind, retryable = _kind_of(type(exc))
    status: int | None = None
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if type(exc) is anthropic.APIStatusError:
            kind, retryable = (
                SERVER if status >= 500 else _BODY_TYPES.get(str(exc.type), BAD_REQUEST)
            )
        if kind == "rate_limit" and not _has_retry_after(exc):
            kind, retryable = SPEND_LIMIT
    elif isinstance(exc, anthropic.APIResponseValidationError):
        status = exc.status_code
    return ModelError(
        _message(kind, exc, status), retryable=retryable, status_code=status, kind=kind
    )


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
        try:
            self._client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=max_retries,
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
        try:
            try:
                message = await self._client.messages.create(**params)
            except UnicodeEncodeError:
                # the SDK encodes the body as UTF-8 before sending anything, and a lone
                # surrogate (model JSON echoed back, a file name that is not UTF-8) cannot be
                # encoded: send U+FFFD in its place rather than fail the attempt
                message = await self._client.messages.create(**_scrubbed(params))
        except anthropic.AnthropicError as exc:
            raise map_error(exc) from exc
        except TypeError as exc:
            if _is_missing_credentials(exc):
                raise map_error(exc) from exc
            raise
        return _reply(message, call.model)

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
