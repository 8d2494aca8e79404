"""Generated projects for faketool, and random edits of them (see faketool.py for the language)."""

from __future__ import annotations

import random


def generate(n: int, rng: random.Random) -> dict[str, str]:
    """`n` modules in layers; each imports a few from lower layers and uses their names."""
    sources: dict[str, str] = {}
    for i in range(n):
        lower = list(sources)
        deps = rng.sample(lower, min(len(lower), rng.randint(0, 3)))
        lines = [f"import {d}" for d in deps]
        lines += [f"def f{i}_{k}" for k in range(rng.randint(1, 3))]
        for d in deps:
            lines.append(f"use {d}.{_defs(sources[d])[0]}")
        if rng.random() < 0.05:
            lines.append("error seeded")
        sources[f"m{i}"] = "\n".join(lines) + "\n"
    return sources


def _defs(text: str) -> list[str]:
    return [l.split()[1] for l in text.splitlines() if l.startswith("def ")]


def edit(sources: dict[str, str], rng: random.Random) -> str:
    """Apply one random edit in place; return what it was."""
    mod = rng.choice(sorted(sources))
    kind = rng.choice(["body", "signature", "add", "remove", "break", "fix", "cycle"])
    text = sources[mod]
    if kind == "body":
        sources[mod] = text + f"# edit {rng.random()}\n"
    elif kind == "signature":
        defs = _defs(text)
        if defs:
            old = rng.choice(defs)
            sources[mod] = text.replace(f"def {old}\n", f"def {old}_v{rng.randint(0, 9)}\n")
    elif kind == "add":
        new = f"n{rng.randint(0, 10**6)}"
        dep = rng.choice(sorted(sources))
        sources[new] = f"import {dep}\ndef {new}_a\nuse {dep}.{(_defs(sources[dep]) or ['x'])[0]}\n"
        mod = new
    elif kind == "remove":
        if len(sources) > 2:
            del sources[mod]
    elif kind == "break":
        sources[mod] = text + "use nowhere.thing\n"
    elif kind == "fix":
        sources[mod] = "\n".join(l for l in text.splitlines() if not l.startswith(("error", "use nowhere"))) + "\n"
    elif kind == "cycle":
        other = rng.choice(sorted(sources))
        sources[mod] = text + f"import {other}\n"
    return f"{kind} {mod}"
