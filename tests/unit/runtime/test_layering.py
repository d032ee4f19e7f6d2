"""The runtime's imports point down its layer order only, and no modules or subpackages import each
other in a cycle (read from the source by tests/support/layering.py; nothing is imported)."""
from __future__ import annotations

from pathlib import Path

import radix_runtime
from tests.support.layering import cycles, layer_of, module_imports, package_graph, upward_imports

PACKAGE = "radix_runtime"
# lowest first; a module may import its own layer and the ones below
LAYERS = [
    ["core", "hf_files", "tokenizer", "chat_template", "images", "version", "tiny_model"],  # shared types
    ["parallel"],  # the process group layers are built for
    ["cache", "layers", "models", "grammar"],  # KV pool, radix tree; the model; grammar masks
    ["executor"],  # one forward, on one rank or across the group
    ["scheduler"],
    ["engine"],
    ["distributed", "server"],  # a group's rank processes; HTTP
    ["launch_server", "fetch_model"],  # flags -> configs, then dispatch; the model download CLI
]
GRAPH = module_imports(Path(radix_runtime.__file__).parent, PACKAGE)


def test_every_module_has_a_layer():
    for module in GRAPH:
        if module != PACKAGE:
            layer_of(module, LAYERS, PACKAGE)  # KeyError names a module the map lacks


def test_no_module_imports_a_higher_layer():
    assert upward_imports(GRAPH, LAYERS, PACKAGE) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []
    assert cycles(package_graph(GRAPH, PACKAGE)) == []
