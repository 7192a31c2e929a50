"""scripts/ is shellcheck-clean (Debian's shellcheck, installed by scripts/setup.sh), unassigned
uppercase variables included (shellcheck assumes those come from the environment unless told): an
unset or misnamed variable fails here, not hours into a study. A library of scripts/lib declares
the sourcing script's variables it reads (``declare OUT BASE``) and marks the ones it sets for it."""
import shutil

from conftest import ROOT, run


def test_scripts_are_shellcheck_clean():
    assert shutil.which("shellcheck"), "shellcheck is missing: run scripts/setup.sh (installs Debian's shellcheck)"
    scripts = sorted((ROOT / "scripts").rglob("*.sh"))
    result = run(["shellcheck", "--format=gcc", *scripts], check=False)  # its options: ROOT/.shellcheckrc
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr
