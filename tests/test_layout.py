"""The package's layers and their order: readers -> model -> runtimes -> planning -> measurement ->
presenters, with errors/resources/version underneath all of them.

Every import inside planner/ is read from the source (module-level and lazy ones inside functions
alike: a lazy import still ties the two modules together), and the test fails on an import that
goes against the layer order and on any import cycle between modules.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "planner"

# Lower layers first. A module may import from its own layer and from the layers listed before it.
LAYERS = ("foundation", "readers", "model", "runtimes", "planning", "measurement", "presenters")
FOUNDATION = {"planner", "planner.errors", "planner.resources"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(mod: str) -> str:
    if mod in FOUNDATION or mod == "planner.__main__":
        return "foundation" if mod != "planner.__main__" else "presenters"
    return mod.split(".")[1]


def imports_of(mod: str, path: Path, known: set[str]) -> set[str]:
    """planner modules that `mod` imports, resolved to modules (a `from pkg import sub` names sub)."""
    out = set()
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.startswith("planner") and t != mod:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def test_every_module_belongs_to_a_layer():
    for mod in modules():
        assert layer(mod) in LAYERS, f"{mod} is in no layer; put it in one of {LAYERS[1:]}"


def test_every_module_is_on_the_map():
    """README's Layout section and ARCHITECTURE.md name every module of its layer (a module added without
    saying where it belongs fails here); package markers, __main__ and probe helpers are exempt."""
    root = PACKAGE.parent
    readme = (root / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    arch = (root / "ARCHITECTURE.md").read_text()
    missing = []
    for mod, path in modules().items():
        short = mod.rpartition(".")[2]
        if path.name in ("__init__.py", "__main__.py") or short in ("alloc", "common"):
            continue
        for doc, text in (("README Layout", layout), ("ARCHITECTURE.md", arch)):
            if short not in text:
                missing.append(f"{mod} not in {doc}")
    assert not missing, missing


def test_no_import_goes_against_the_layer_order():
    wrong = []
    for mod, deps in graph().items():
        for dep in deps:
            if dep == "planner":      # the package __init__ (version) is foundation
                continue
            if LAYERS.index(layer(dep)) > LAYERS.index(layer(mod)):
                wrong.append(f"{mod} ({layer(mod)}) imports {dep} ({layer(dep)})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def strongconnect(v):          # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_cycle_and_a_wrong_way_import(tmp_path):
    """The checks above are only worth something if they can fail: a made-up pair of modules that
    import each other, one of them from a lower layer, must be caught by the same functions."""
    (tmp_path / "planner" / "readers").mkdir(parents=True)
    (tmp_path / "planner" / "presenters").mkdir(parents=True)
    (tmp_path / "planner" / "readers" / "a.py").write_text("def f():\n    from planner.presenters import b\n")
    (tmp_path / "planner" / "presenters" / "b.py").write_text("from planner.readers.a import f\n")
    known = {"planner.readers.a", "planner.presenters.b", "planner.presenters", "planner.readers"}
    a = imports_of("planner.readers.a", tmp_path / "planner" / "readers" / "a.py", known)
    b = imports_of("planner.presenters.b", tmp_path / "planner" / "presenters" / "b.py", known)
    assert a == {"planner.presenters.b"} and b == {"planner.readers.a"}
    assert LAYERS.index(layer("planner.presenters.b")) > LAYERS.index(layer("planner.readers.a"))


@pytest.mark.parametrize("heavy", ["torch", "transformers", "streamlit", "plotly", "numpy"])
def test_fit_path_imports_no_heavy_package(heavy):
    import subprocess
    import sys

    code = ("import sys; from planner.presenters.cli import main\n"
            "try:\n    main(['fit', '--device', '8gb-gpu', '-m', 'gemma-4-e4b', '-w', 'q4_k_m'])\n"
            "except SystemExit:\n    pass\n"
            f"print('{heavy}' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert r.stdout.strip().endswith("False"), r.stdout + r.stderr
