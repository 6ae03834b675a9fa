"""The package's layers (ARCHITECTURE.md): base <- inference <- training <- evaluation <- stages
<- cli, each importing only from the layers below it, with no import circle; and the inference
layer on its own, as a service that only predicts would ship it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sparse_distill"
# Bottom to top. The root modules other than __init__ are the base every layer shares.
LAYERS = ["base", "inference", "training", "evaluation", "stages", "cli"]


def layer(module: str) -> str:
    """"sparse_distill.training.teacher" -> "training"; `python -m sparse_distill` (__main__)
    -> "cli"; the other root modules -> "base"."""
    parts = module.split(".")
    if parts[1:] == ["__main__"]:
        return "cli"
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "base"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["sparse_distill", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """Every module of the package that `module` imports, at the top or inside a function
    (a lazy import is an edge too); `from . import x` counts as the module `x` where there
    is one."""
    known = modules()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sparse_distill")}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else \
                node.module or ""
            if not target.startswith("sparse_distill"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & set(known)
            found |= subs or {target}
    return {m for m in found if m in known}


def graph() -> dict[str, set[str]]:
    # The root __init__ is the API's facade: it names things of every layer (lazily) and is
    # imported first whatever is imported, so it is neither a node nor an edge.
    return {m: imports(m, p) - {"sparse_distill"}
            for m, p in modules().items() if m != "sparse_distill"}


def test_every_import_points_down_or_sideways():
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})"
              for m, targets in graph().items() for t in sorted(targets)
              if LAYERS.index(layer(t)) > LAYERS.index(layer(m))]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_graph_test_sees_lazy_and_relative_imports():
    edges = graph()
    # stages.pipeline imports the stage modules at the top; data imports augment in a function.
    assert "sparse_distill.stages.teach" in edges["sparse_distill.stages.pipeline"]
    assert "sparse_distill.training.augment" in edges["sparse_distill.training.data"]
    assert layer("sparse_distill.files") == "base"
    assert layer("sparse_distill.cli") == "cli"


FORBIDDEN = ("yaml", "transformers", "datasets", "sklearn", "scipy", "pyarrow",
             "sparse_distill.training", "sparse_distill.evaluation", "sparse_distill.stages",
             "sparse_distill.cli")

COLD_IMPORT = """
import json, sys, time
start = time.perf_counter()
import sparse_distill.inference.student, sparse_distill.inference.predict
import sparse_distill.inference.shrink, sparse_distill.inference.export
seconds = time.perf_counter() - start
from sparse_distill.inference.student import Student
student = Student.load(sys.argv[1])
labels = student.predict(["a warm, funny film", "a dull mess", ""])
print(json.dumps({"seconds": seconds, "labels": labels, "modules": sorted(sys.modules)}))
"""


def test_the_inference_layer_imports_nothing_of_training(trained_student):
    """In a fresh interpreter: import every serving module and predict, then look at what got
    imported. The cold import time is printed (`pytest -s`) for the record."""
    result = subprocess.run([sys.executable, "-c", COLD_IMPORT, str(trained_student)],
                            capture_output=True, text=True, check=True)
    out = json.loads(result.stdout)
    loaded = [m for m in out["modules"]
              if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == []
    assert set(out["labels"]) <= {"neg", "pos"} and len(out["labels"]) == 3
    print(f"inference layer cold import: {out['seconds']:.2f} s")


# Imports that would fail in the child process: a meta-path finder refuses them.
BLOCKED = FORBIDDEN

BLOCKING_CHILD = """
import sys
BLOCKED = {blocked!r}

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError("blocked in this test: " + name)
        return None

sys.meta_path.insert(0, Refuse())
from sparse_distill.inference.student import Student
student = Student.load({directory!r})
print(" ".join(student.predict(["a warm, funny film", "a dull mess", ""])))
print(student.predict_proba(["a warm, funny film"]).shape)
"""


def test_a_student_predicts_with_training_and_teacher_code_blocked(trained_student):
    result = subprocess.run([sys.executable, "-c", BLOCKING_CHILD.format(
        blocked=BLOCKED, directory=str(trained_student))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    labels, shape = result.stdout.splitlines()
    assert set(labels.split()) <= {"neg", "pos"} and len(labels.split()) == 3
    assert shape == "(1, 2)"


def test_the_blocker_does_block():
    code = BLOCKING_CHILD.split("from sparse_distill.inference")[0] + \
        "import sparse_distill.training.teacher\n"
    result = subprocess.run([sys.executable, "-c", code.format(blocked=BLOCKED, directory="")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "blocked in this test: " in result.stderr
