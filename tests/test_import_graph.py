"""No two modules of openvle, nor of the simulators (sandbox), import each other, directly or through
others (`make lint` runs it).

import-linter ([tool.importlinter] in pyproject.toml) keeps the layers and forbids loops between the
modules of one package; this also sees a loop between a package's __init__ and its own modules,
which that contract cannot. Imports inside functions and under TYPE_CHECKING count: a loop hidden
in a function still decides which module must be imported first.
"""

from __future__ import annotations

import grimp
import pytest


def _loops(package: str) -> list[list[str]]:
    """One shortest loop through each module that is in one: [m, ..., m]."""
    graph = grimp.build_graph(package, cache_dir=None)
    loops, seen = [], set()
    for module in sorted(graph.modules):
        if module in seen:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                loops.append([module, *back])
                seen.update(back)
                break
    return loops


@pytest.mark.parametrize("package", ["openvle", "sandbox"])
def test_no_module_is_in_an_import_loop(package):
    loops = _loops(package)
    assert not loops, "import loops (break each: move the shared part down a layer, or pass a dotted path " \
                      "or a hook):\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_every_operation_in_the_catalogue_names_a_job_function():
    from openvle.operations import all_operations

    for name, op in all_operations().items():
        assert op.path.startswith("openvle.jobs."), f"{name}: {op.path} is not a job module"
        assert callable(op.func), f"{name}: {op.path} is not a function"
