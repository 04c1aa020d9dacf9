"""The offline runner: a deterministic scripted model for the demo and tests, always labelled
as such; its documents and text helpers."""
