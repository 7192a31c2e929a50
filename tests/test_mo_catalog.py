"""fairseq_compress/corpus/mo_catalog.py against GNU msgfmt/msgunfmt (skipped when gettext is missing)."""
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path):
    """A script of scripts/ as a module, from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


read_mo = load_script(ROOT / "fairseq_compress/corpus/mo_catalog.py").read_mo

pytestmark = pytest.mark.skipif(
    not (shutil.which("msgfmt") and shutil.which("msgunfmt")), reason="GNU gettext not installed"
)

PO = r'''
msgid ""
msgstr ""
"Content-Type: text/plain; charset={charset}\n"
"Plural-Forms: nplurals=2; plural=(n > 1);\n"

msgid "Open the file"
msgstr "Ouvrir le fichier"

msgctxt "menu"
msgid "Open"
msgstr "Ouvrir"

msgctxt "verb"
msgid "Open"
msgstr "Ouvre"

msgid "%d file deleted"
msgid_plural "%d files deleted"
msgstr[0] "%d fichier supprimé"
msgstr[1] "%d fichiers supprimés"

msgctxt "status"
msgid "One line\n"
"and \"another\"\tline"
msgstr "Une ligne\n"
"et « une autre »\tligne"

#, c-format
msgid "Copied %<PRIu64> bytes"
msgstr "%<PRIu64> octets copiés"
'''

EXPECTED = {
    (None, "Open the file", "Ouvrir le fichier"),
    ("menu", "Open", "Ouvrir"),
    ("verb", "Open", "Ouvre"),
    (None, "%d file deleted", "%d fichier supprimé"),
    ("status", 'One line\nand "another"\tline', "Une ligne\net « une autre »\tligne"),
}

PO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b",
              "f": "\f", "v": "\v"}


def msgfmt(tmp_path, charset="UTF-8", endianness="little"):
    po = tmp_path / f"{charset}-{endianness}.po"
    po.write_bytes(PO.replace("{charset}", charset).encode(charset))
    mo = po.with_suffix(".mo")
    subprocess.run(["msgfmt", f"--endianness={endianness}", "-o", mo, po], check=True)
    return mo


def msgunfmt(mo):
    """(msgctxt, msgid, msgstr[0]) of each entry msgunfmt prints, except the header and the
    system-dependent <PRI…> strings."""
    raw = subprocess.run(["msgunfmt", "--no-wrap", mo], check=True, capture_output=True).stdout
    charset = re.search(rb"charset=([\w.-]+)", raw).group(1).decode("ascii")
    entries = set()
    for block in raw.decode(charset).split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith("#"):  # flags such as "#, c-format"
                continue
            match = re.match(r'(\w+(?:\[\d+\])?) "(.*)"$', line)
            if match:
                key, text = match.groups()
                fields[key] = ""
            else:
                text = line[1:-1]
            fields[key] += re.sub(r"\\(.)", lambda m: PO_ESCAPES[m.group(1)], text)
        msgid = fields.get("msgid", "")
        if msgid and "<PRI" not in msgid:
            msgstr = fields.get("msgstr", fields.get("msgstr[0]"))
            entries.add((fields.get("msgctxt"), msgid, msgstr))
    return entries


@pytest.mark.parametrize("endianness", ["little", "big"])
def test_context_plural_and_sysdep_strings(tmp_path, endianness):
    entries = read_mo(msgfmt(tmp_path, endianness=endianness))
    assert len(entries) == len(EXPECTED)  # the <PRIu64> string is system-dependent: skipped
    assert set(entries) == EXPECTED


def test_header_charset_is_applied(tmp_path):
    entries = read_mo(msgfmt(tmp_path, charset="ISO-8859-1"))
    assert set(entries) == EXPECTED


def test_agrees_with_msgunfmt(tmp_path):
    mo = msgfmt(tmp_path)
    assert set(read_mo(mo)) == msgunfmt(mo) == EXPECTED


def test_agrees_with_msgunfmt_on_installed_catalogs():
    catalogs = sorted(Path("/usr/share/locale/fr/LC_MESSAGES").glob("*.mo"))[:6]
    if not catalogs:
        pytest.skip("no French catalogs installed")
    for mo in catalogs:
        assert {e for e in read_mo(mo) if "<PRI" not in e[1]} == msgunfmt(mo), mo
