"""The model boundary: the ``ModelClient`` seam, the one ``anthropic`` importer
(``models/anthropic.py``), model routing (aliases, precedence, fallback) and the dated price
table."""
