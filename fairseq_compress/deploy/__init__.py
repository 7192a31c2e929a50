"""Export of trained and compressed checkpoints to the runtimes users deploy with."""
import os
import shutil
from typing import Callable

SPM_MODEL = "spm.model"  # the data-bin's sentencepiece model, copied beside every exported model


def write_directory(out: str, write: Callable[[str], dict]) -> dict:
    """`write(staging)` into a fresh directory next to `out`, then put it in place of `out`, so a
    failed export leaves neither a half-written `out` nor a lost earlier one (out is replaced only
    once the new one is complete; the caller has checked that replacing it is allowed)."""
    staging = f"{out}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        report = write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.isdir(out):
        shutil.rmtree(out)
    elif os.path.exists(out):
        os.remove(out)
    os.rename(staging, out)
    return {**report, "out": out}
