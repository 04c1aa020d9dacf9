"""Hostile template and agent files, as an attacker writes them (shared by the tests and
``benchmarks/validation.py``): alias bombs, deep nesting, huge and long templates."""

from __future__ import annotations

import itertools

LOL = '"lol"'


def billion_laughs_template(levels: int = 9, width: int = 9) -> str:
    """A template whose input defaults are a billion laughs: each level's default is ``width``
    aliases of the level before, so ``levels=9`` stands for 9**9 (387 million) strings."""
    names = [f"lol{n}" for n in range(levels)]
    lines = [
        "name: laughs",
        "description: A harmless-looking template whose input defaults are YAML aliases",
        "inputs:",
        f"  {names[0]}: {{type: list, default: &{names[0]} [{', '.join([LOL] * width)}]}}",
    ]
    for prev, name in itertools.pairwise(names):
        items = ", ".join([f"*{prev}"] * width)
        lines.append(f"  {name}: {{type: list, default: &{name} [{items}]}}")
    lines += ["stages:", "  - id: only", "    run: echo hello", ""]
    return "\n".join(lines)


def billion_laughs_agent(levels: int = 9, width: int = 9) -> str:
    """An agent file whose front matter carries a billion laughs in an extra key (Claude Code's
    format keeps unknown keys, so they survive into the definition)."""
    names = [f"lol{n}" for n in range(levels)]
    lines = [
        "---",
        "name: laughs",
        "description: Looks like any other agent",
        f"{names[0]}: &{names[0]} [{', '.join([LOL] * width)}]",
    ]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * width)}]")
    lines += ["---", "You laugh.", ""]
    return "\n".join(lines)


def deep_agent(depth: int = 50_000) -> str:
    """A 100 KB agent file: ``depth`` nested flow lists in its front matter."""
    return f"---\nname: deep\ndescription: Nested\nx: {'[' * depth}{']' * depth}\n---\nBody.\n"


def deep_block_yaml_template(depth: int = 200) -> str:
    """A template nested ``depth`` levels in block style (indentation, no brackets)."""
    lines = ["name: deep", "inputs:", "  x:", "    type: object", "    default:"]
    lines += [f"{'  ' * (n + 3)}k{n}:" for n in range(depth)]
    lines[-1] += " 1"
    lines += ["stages:", "  - {id: only, run: echo}", ""]
    return "\n".join(lines)


def deep_toml_template(depth: int = 10_000) -> str:
    """A 20 KB TOML template: an input default of ``depth`` nested arrays."""
    return (
        f'name = "deep"\n\n[inputs.x]\ntype = "list"\ndefault = {"[" * depth}{"]" * depth}\n\n'
        '[[stages]]\nid = "only"\nrun = "echo"\n'
    )


def chained_template(stages: int) -> str:
    """``stages`` stages in a chain, each depending on and needing the one before."""
    lines = ["name: chain", "description: A long chain", "stages:"]
    for i in range(stages):
        lines += [f"  - id: s{i}", "    run: echo step", "    produces: [out]"]
        if i:
            lines += [f"    depends_on: [s{i - 1}]", f"    needs: [s{i - 1}.out]"]
    lines.append("")
    return "\n".join(lines)


def huge_template(size: int = 10 * 1024 * 1024) -> str:
    """A template of about ``size`` bytes (never more): a chain of stages with 1 KB
    descriptions."""
    filler = "x" * 1000
    parts = [
        "name: huge\ndescription: A very long template\nstages:\n",
        f"  - id: s0\n    run: echo\n    produces: [out]\n    description: {filler}\n",
    ]
    total, n = sum(map(len, parts)), 1
    while True:
        entry = (
            f"  - id: s{n}\n    run: echo\n    produces: [out]\n"
            f"    depends_on: [s{n - 1}]\n    needs: [s{n - 1}.out]\n"
            f"    description: {filler}\n"
        )
        if total + len(entry) > size:
            return "".join(parts)
        parts.append(entry)
        total += len(entry)
        n += 1
