"""Read GNU gettext .mo catalogs with msgctxt and the first plural form kept.

The stdlib ``gettext.GNUTranslations`` parser is built for lookups: it folds msgctxt into
the key, expands plurals into ``(msgid, n)`` keys and decodes msgids with a guessed charset.
For building a parallel corpus we want the plain (msgctxt, msgid, msgstr) triples instead.

Layout (see the GNU gettext manual, "The Format of GNU MO Files"): a header of 32-bit words
(magic, revision, N, offset of the msgid table, offset of the msgstr table, ...), then two
tables of N (length, offset) pairs. A msgid is ``ctxt\\x04msgid`` when it has a context and
``msgid\\x00msgid_plural`` when it has plural forms; its msgstr then holds the forms
``\\x00``-separated. The entry with an empty msgid is the header, whose Content-Type names
the charset of every other string.
"""
import codecs
import re
import struct
import sys

LE_MAGIC = 0x950412DE
CONTEXT_SEP = b"\x04"
PLURAL_SEP = b"\x00"


def _string_table(buf, fmt, offset, count):
    """Return the `count` byte strings described by the (length, offset) table at `offset`."""
    strings = []
    for i in range(count):
        length, start = struct.unpack_from(fmt, buf, offset + 8 * i)
        if start + length > len(buf):
            raise ValueError(f"string {i} runs past the end of the file")
        strings.append(buf[start:start + length])
    return strings


def _charset(header):
    """Charset named by the header's Content-Type; UTF-8 when absent or a placeholder."""
    match = re.search(rb"charset=([A-Za-z0-9_.:-]+)", header)
    if match:
        try:
            return codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:  # templates say "charset=CHARSET"
            pass
    return "utf-8"


def read_mo(path):
    """Return [(msgctxt or None, msgid, msgstr)] for the catalog at `path`, header excluded.

    Plural entries give their singular msgid and first msgstr form. System-dependent
    strings (revision 0.1 catalogs, e.g. messages using <PRIu64>) live in extra tables
    outside the two static ones and are not read.
    """
    with open(path, "rb") as f:
        buf = f.read()
    for endian in "<>":
        if struct.unpack_from(endian + "I", buf)[0] == LE_MAGIC:
            break
    else:
        raise ValueError(f"{path}: not a .mo file (bad magic)")
    revision, count, ids_at, strs_at = struct.unpack_from(endian + "4I", buf, 4)
    if revision >> 16 > 1:  # the manual: stop reading on an unknown major revision
        raise ValueError(f"{path}: unsupported .mo revision {revision >> 16}")
    fmt = endian + "II"
    raw = zip(_string_table(buf, fmt, ids_at, count), _string_table(buf, fmt, strs_at, count))

    entries, charset = [], "utf-8"
    for msgid, msgstr in raw:
        if msgid == b"":
            charset = _charset(msgstr)
        else:
            entries.append((msgid, msgstr))
    return [_decode(msgid, msgstr, charset) for msgid, msgstr in entries]


def _decode(msgid, msgstr, charset):
    """Split context and plural forms off one raw entry and decode it."""
    context = None
    if CONTEXT_SEP in msgid:
        context, msgid = msgid.split(CONTEXT_SEP, 1)
        context = context.decode(charset)
    msgid = msgid.split(PLURAL_SEP, 1)[0]
    msgstr = msgstr.split(PLURAL_SEP, 1)[0]
    return context, msgid.decode(charset), msgstr.decode(charset)


if __name__ == "__main__":
    # Dump a catalog as TSV for eyeballing, with newlines and tabs shown escaped.
    def show(text):
        return (text or "").replace("\n", "\\n").replace("\t", "\\t")

    for ctx, msgid, msgstr in read_mo(sys.argv[1]):
        print(show(ctx), show(msgid), show(msgstr), sep="\t")
