"""The import arrows between v2l's sub-packages, function-level imports included, and their cycles.

    python tests/import_graph.py            # arrows (with counts), cycles, and lines per sub-package
    python tests/import_graph.py --json

A node is a sub-package (`v2l.tokenizer`) or a top-level module (`v2l.registry`); `tests/test_layout.py` fails on a
cycle and on a private name imported across modules.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "v2l"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node(module: str) -> str:
    """`v2l.tokenizer.config` -> `v2l.tokenizer`; `v2l.registry` -> `v2l.registry`; `v2l` -> `v2l`."""
    parts = module.split(".")
    if len(parts) <= 2:
        return module
    return ".".join(parts[:2])


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every import in the file, at any depth, relative ones resolved."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import):
            out += [(a.name, [], n.lineno) for a in n.names if a.name.split(".")[0] == "v2l"]
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")
                base = base[: len(base) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            if target.split(".")[0] == "v2l":
                out.append((target, [a.name for a in n.names], n.lineno))
    return out


def graph() -> tuple[dict, list]:
    """({(from, to): count}, [private imports across modules: (file, line, module, name)])."""
    arrows: dict[tuple[str, str], int] = defaultdict(int)
    private = []
    for path in sorted(SRC.rglob("*.py")):
        src = node(module_name(path))
        for target, names, line in imports(path):
            for name in names or [""]:
                full = f"{target}.{name}" if name else target
                # `from . import x` imports a module; resolve it so the arrow points at its sub-package
                dst = node(
                    full
                    if (SRC.parent / full.replace(".", "/")).with_suffix(".py").exists()
                    or (SRC.parent / full.replace(".", "/")).is_dir()
                    else target
                )
                if dst != src and dst != "v2l" and src != "v2l":
                    arrows[(src, dst)] += 1
                if name.startswith("_") and not name.startswith("__") and target != module_name(path):
                    private.append((str(path.relative_to(SRC.parent.parent)), line, target, name))
    return dict(arrows), private


def cycles(arrows: dict) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    succ = defaultdict(set)
    for a, b in arrows:
        succ[a].add(b)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted({x for pair in arrows for x in pair}):
        if v not in index:
            visit(v)
    return out


def lines_per_node() -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(lambda: {"files": 0, "lines": 0, "largest_file": ("", 0)})
    for path in SRC.rglob("*.py"):
        n = len(path.read_text(encoding="utf-8").splitlines())
        d = out[node(module_name(path))]
        d["files"] += 1
        d["lines"] += n
        if n > d["largest_file"][1]:
            d["largest_file"] = (str(path.relative_to(SRC.parent.parent)), n)
    return dict(out)


def largest_functions(top: int = 5) -> list[tuple[str, str, int]]:
    found = []
    for path in SRC.rglob("*.py"):
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((str(path.relative_to(SRC.parent.parent)), n.name, n.end_lineno - n.lineno + 1))
    return sorted(found, key=lambda t: -t[2])[:top]


if __name__ == "__main__":
    arrows, private = graph()
    report = {
        "arrows": {f"{a} -> {b}": c for (a, b), c in sorted(arrows.items())},
        "cycles": cycles(arrows),
        "private_imports": private,
        "lines": lines_per_node(),
        "largest_functions": largest_functions(),
    }
    if "--json" in sys.argv:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report["arrows"].items():
            print(f"{k} ({v})")
        print(f"cycles: {report['cycles'] or 'none'}")
        print(f"private names imported across modules: {len(private)}")
        for p in private:
            print("  ", *p)
        for k, v in sorted(report["lines"].items()):
            print(
                f"{k}: {v['files']} files, {v['lines']} lines; largest {v['largest_file'][0]} ({v['largest_file'][1]})"
            )
        for f, name, n in report["largest_functions"]:
            print(f"largest function: {f}:{name} ({n} lines)")
