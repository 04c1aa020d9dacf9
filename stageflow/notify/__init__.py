"""Notifications (``[notify]`` in config): a human is needed, a run ended, a budget pause."""
