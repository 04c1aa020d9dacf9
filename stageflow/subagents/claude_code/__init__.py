"""The Claude Code runner: one fresh ``claude -p`` per attempt (argv, stream-json usage, the
closing JSON block), routed to the same models as the API runner."""
