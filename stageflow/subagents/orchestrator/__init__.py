"""Cheap orchestration decisions: structured questions to a small model, rules as fallback
(see ``ask``, ``questions``, ``options``)."""
