"""modules/ is the bottom layer of the package: the layers built on it (compress/, criterions/,
tasks/, models/, deploy/, studies/, the CLI) import from it, never the other way round."""
import ast

import pytest

from conftest import USER_DIR

ABOVE_MODULES = ("compress", "criterions", "tasks", "models", "deploy", "studies", "cli")


def imported_packages(path):
    """The fairseq_compress subpackages and modules a file of fairseq_compress/modules/ imports from."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 2:  # from ..X import
            yield (node.module or "").split(".")[0]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fairseq_compress."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            yield from (alias.name.split(".")[1] for alias in node.names if alias.name.startswith("fairseq_compress."))


@pytest.mark.parametrize("path", sorted((USER_DIR / "modules").glob("*.py")), ids=lambda path: path.name)
def test_modules_import_nothing_from_the_layers_above(path):
    assert not [package for package in imported_packages(path) if package in ABOVE_MODULES]


def test_the_check_sees_relative_and_absolute_imports(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("from ..compress.size import x\nfrom fairseq_compress.tasks import y\n"
                      "import fairseq_compress.deploy.hf_tokenizer\nfrom .scalar_quantizer import BITS\n")
    assert list(imported_packages(source)) == ["compress", "tasks", "deploy"]
