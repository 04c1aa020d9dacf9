"""The workflow language: spec models, the YAML/TOML loader, conditions and DAG checks."""
