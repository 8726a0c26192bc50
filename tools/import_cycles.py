"""Find import cycles among the modules of each package, from the source alone.

    python -m tools.import_cycles [data train export runtime benchmarks tools]

Every ``import`` statement counts, also those inside functions (a lazy import still closes
a cycle when it runs), except the ones under ``if __name__ == "__main__":`` (a module's
entry point, never run on import). ``from pkg import name`` counts as an import of the
submodule ``pkg.name`` when there is one, else of ``pkg`` itself. Exits 1 and prints each
cycle when one is found.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "train", "export", "runtime", "benchmarks", "tools")


def modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (subpackages included)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_main_guard(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if _is_main_guard(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a known module."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def edges(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the same package that ``module`` imports."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            hit = _resolve(target, known)
            if hit is not None and hit != module:
                out.add(hit)
    return out


def cycles(package: str, root: Path = ROOT) -> list[list[str]]:
    """The import cycles among ``package``'s modules (each as a closed list of names)."""
    known = modules(package, root)
    graph = {m: sorted(edges(m, p, known)) for m, p in known.items()}
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    return found


def main(argv: list[str] | None = None) -> int:
    """CLI: print every cycle; exit 1 if there is one."""
    packages = (argv if argv is not None else sys.argv[1:]) or list(PACKAGES)
    bad = 0
    for package in packages:
        for cycle in cycles(package):
            bad += 1
            print(f"{package}: import cycle {' -> '.join(cycle)}")
    print(f"{bad} import cycle(s) in {', '.join(packages)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
