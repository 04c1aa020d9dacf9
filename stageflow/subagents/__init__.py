"""Runners that perform stage attempts: the runner choice (``select``), command stages, the
Anthropic API runner (tool-use loop, ``submit_result``, the context builder), the Claude Code
runner (``claude_code/``) and the scripted offline runner (``offline/``)."""
