"""A loopback stand-in of the Anthropic Messages API: prompt caching, token accounting and a
scripted stage agent. ``from tests.standin import StandIn``; see ``server.py``."""

from tests.standin.agent import AgentConfig, StageAgent, Turn
from tests.standin.caching import CacheUsage, PromptCache
from tests.standin.reading import StageInfo, stage_info
from tests.standin.server import Recorded, StandIn, Totals
from tests.standin.tokens import count_block, count_text, prompt_blocks, prompt_tokens
from tests.standin.wire import (
    Reply,
    error_body,
    error_reply,
    message,
    text_block,
    tool_use_block,
)

__all__ = [
    "AgentConfig",
    "CacheUsage",
    "PromptCache",
    "Recorded",
    "Reply",
    "StageAgent",
    "StageInfo",
    "StandIn",
    "Totals",
    "Turn",
    "count_block",
    "count_text",
    "error_body",
    "error_reply",
    "message",
    "prompt_blocks",
    "prompt_tokens",
    "stage_info",
    "text_block",
    "tool_use_block",
]
