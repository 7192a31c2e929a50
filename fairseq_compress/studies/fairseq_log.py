"""The statistics fairseq writes with --log-format json, read back from its log: every line
"<time> | INFO | <tag> | {json}" under one tag: 'train_inner' every --log-interval updates,
'train' at the end of an epoch, the subset's name ('valid', 'test') for each scored subset,
and 'timed' from fairseq-compress timed-validate. fairseq formats every number as a string; they
come back as floats. End-of-epoch and subset records prefix their keys with the tag
("train_loss", "valid_accuracy"); the prefix is removed, so every tag's records share key
names ("loss", "num_updates") with the 'train_inner' ones."""
import json
import re
from typing import Dict, List, Union

Stat = Union[float, str]


def _number(value: object) -> Stat:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def records(log_text: str, tag: str) -> List[Dict[str, Stat]]:
    """The JSON records logged under `tag`, in log order."""
    line = re.compile(rf"\| {re.escape(tag)} \| (\{{.*\}})\s*$")
    prefix = f"{tag}_"
    found = []
    for match in filter(None, map(line.search, log_text.splitlines())):
        stats = json.loads(match.group(1))
        found.append({key[len(prefix):] if key.startswith(prefix) else key: _number(value) for key, value in stats.items()})
    return found
