"""The package's import structure: modules import modules, never the package face
(``import rptdose`` / ``from rptdose import name``) from inside, and no two modules import each
other through any chain (function-level imports included; ``if TYPE_CHECKING:`` blocks, which do
not run, left out)."""

import ast
from pathlib import Path

import rptdose

ROOT = Path(rptdose.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    mods = _modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    graph: dict[str, set[str]] = {m: set() for m in mods}
    face: list[tuple[str, str]] = []
    for m, p in mods.items():
        tree = ast.parse(p.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "rptdose":
                        face.append((m, "import rptdose"))
                    elif a.name.startswith("rptdose."):
                        graph[m].add(resolve(a.name))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rptdose":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if sub in mods:
                        graph[m].add(sub)
                    elif node.module == "rptdose" and a.name != "_core":   # _core: the compiled module
                        face.append((m, f"from rptdose import {a.name}"))
                    elif node.module != "rptdose":
                        graph[m].add(resolve(node.module))
        graph[m].discard(m)
    return graph, face


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph, _ = _graph()
    assert len(graph) > 40
    assert _cycles(graph) == []


def test_no_module_imports_the_package_face():
    _, face = _graph()
    # the command line sits above the package face (it is not imported by it): it may use it
    assert [f for f in face if not f[0].startswith("rptdose.cli")] == []


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_limits_and_version_written_once():
    """The compiled core and the Python API agree on the fewest batches and on the version (the
    core's comes from pyproject.toml through the build)."""
    from rptdose import _core
    from rptdose.transport.simulate import MIN_BATCHES

    assert _core.MIN_BATCHES == MIN_BATCHES == 10
    assert _core.version() == rptdose.__version__
