"""The layout's rules, read from the code itself: imports go one way.

The import graph is built from the AST of every module of sidflows/ and flows/:
imports inside functions count, relative imports are resolved, and
``from pkg import module`` is an edge to that module. Then:

- no cycle anywhere (a cycle hidden behind a function-local import is still one);
- sidflows/ never imports prefect or flows (sidflows/testing may import prefect,
  never flows): the unit's knowledge does not depend on its orchestration;
- a function-local import says why on its line or the line above (most keep
  ``sidflows propose`` from loading Prefect).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sidflows", "flows")
# Comments that are directions to a tool, not a reason.
TOOL_COMMENTS = ("noqa", "type:", "fmt:", "pragma:", "pyright:", "mypy:")


@dataclass(frozen=True)
class Import:
    target: str  # the imported module, resolved and absolute
    line: int
    end_line: int
    local: bool  # inside a function


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[Import] = field(default_factory=list)
    reasons: set[int] = field(default_factory=set)  # lines holding a comment that is a reason
    comment_only: set[int] = field(default_factory=set)  # lines that are nothing but a comment


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _comments(source: str) -> tuple[set[int], set[int]]:
    reasons: set[int] = set()
    comment_only: set[int] = set()
    code_lines: set[int] = set()
    comment_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            comment_lines.add(token.start[0])
            if text and not text.lower().startswith(TOOL_COMMENTS):
                reasons.add(token.start[0])
        elif token.type not in (
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            code_lines.update(range(token.start[0], token.end[0] + 1))
    comment_only = comment_lines - code_lines
    return reasons, comment_only


def _walk(node: ast.AST, local: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        inside = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield child, inside
        yield from _walk(child, inside)


def load_modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name, is_package = module_name(path)
            found[name] = Module(name, path, is_package)
    for module in found.values():
        source = module.path.read_text()
        module.reasons, module.comment_only = _comments(source)
        tree = ast.parse(source, filename=str(module.path))
        for node, local in _walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _from_targets(module, node, found)
            else:
                continue
            end = node.end_lineno or node.lineno
            module.imports += [Import(t, node.lineno, end, local) for t in targets]
    return found


def _from_targets(module: Module, node: ast.ImportFrom, modules: dict[str, Module]) -> list[str]:
    """``from X import a, b``: the module a or b where it is one, else X itself."""
    if node.level:
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    targets = []
    for alias in node.names:
        candidate = f"{source}.{alias.name}"
        targets.append(candidate if candidate in modules else source)
    return targets


MODULES = load_modules()


def project_edges() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (the nearest enclosing module of a name)."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for module in MODULES.values():
        for imported in module.imports:
            target = imported.target
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module.name:
                edges[module.name].add(target)
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_cycle_in(component, edges) for component in components]


def _cycle_in(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A path start -> ... -> start inside one strongly connected component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return component  # pragma: no cover (a component always holds a cycle)


def test_the_graph_is_read() -> None:
    """The checks below see the modules and their imports (local ones too)."""
    assert {"sidflows.service", "flows.cli", "sidflows.store.db"} <= set(MODULES)
    edges = project_edges()
    assert any(t.startswith("sidflows.store") for t in edges["sidflows.service.plans"])
    assert "sidflows.service.plans" in edges["sidflows.service"]
    assert any(i.local for m in MODULES.values() for i in m.imports)


def test_no_import_cycle() -> None:
    """No module reaches itself through imports, function-local imports included."""
    cycles = find_cycles(project_edges())
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _top(name: str) -> str:
    return name.partition(".")[0]


def test_sidflows_never_imports_prefect_or_flows() -> None:
    """sidflows/ (outside sidflows/testing) imports neither prefect nor flows; testing not flows."""
    offenders = []
    for module in MODULES.values():
        if _top(module.name) != "sidflows":
            continue
        testing = module.name == "sidflows.testing" or module.name.startswith("sidflows.testing.")
        banned = {"flows"} if testing else {"flows", "prefect"}
        offenders += [
            f"{module.path.relative_to(ROOT)}:{i.line} imports {i.target}"
            for i in module.imports
            if _top(i.target) in banned
        ]
    assert offenders == []


def says_why(module: Module, line: int, end_line: int) -> bool:
    """A reason comment on one of the statement's lines, or alone on the line above it."""
    above = line - 1
    return bool(set(range(line, end_line + 1)) & module.reasons) or (
        above in module.reasons and above in module.comment_only
    )


def test_every_function_local_import_says_why() -> None:
    """A function-local import carries a reason comment on its line or the line above."""
    silent = [
        f"{module.path.relative_to(ROOT)}:{imported.line} {imported.target}"
        for module in MODULES.values()
        for imported in module.imports
        if imported.local and not says_why(module, imported.line, imported.end_line)
    ]
    assert silent == [], "function-local imports without a reason:\n" + "\n".join(silent)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import a\nimport b\n", []),
        ("def f():\n    import a  # why\n", []),
        ("def f():\n    # why\n    import a\n", []),
        ("def f():\n    import a  # noqa: PLC0415\n", ["a"]),
        ("def f():\n    x = 1  # about x\n    import a\n", ["a"]),
        ("def f():\n    from a import (\n        b,  # why\n    )\n", []),
    ],
    ids=["top level", "same line", "line above", "only noqa", "code above", "inside parens"],
)
def test_the_reason_check_itself(source: str, expected: list[str], tmp_path: Path) -> None:
    """What counts as a reason comment."""
    module = Module("m", tmp_path / "m.py", False)
    module.reasons, module.comment_only = _comments(source)
    missing = []
    for node, local in _walk(ast.parse(source)):
        if (
            isinstance(node, ast.Import | ast.ImportFrom)
            and local
            and not says_why(module, node.lineno, node.end_lineno or node.lineno)
        ):
            name = node.names[0].name if isinstance(node, ast.Import) else node.module
            missing.append(name or "")
    assert missing == expected


def test_a_cycle_is_found_and_printed() -> None:
    """The cycle finder finds a cycle and names its path."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
