"""fairseq-train that SIGKILLs itself halfway through copying a checkpoint over an
existing checkpoint_last.pt (test-only): what an OOM kill or a pre-emption can do
to a save. Without atomic copies that leaves checkpoint_last.pt truncated."""
import os
import shutil
import signal

from fairseq_cli import train

stock_copyfile = shutil.copyfile


def copy_half_then_die(src, dst, *args, **kwargs):
    last = os.path.join(os.path.dirname(dst), "checkpoint_last.pt")
    if os.path.basename(dst).startswith("checkpoint_last.pt") and os.path.exists(last):
        with open(src, "rb") as f, open(dst, "wb") as out:
            out.write(f.read(os.path.getsize(src) // 2))
        os.kill(os.getpid(), signal.SIGKILL)
    return stock_copyfile(src, dst, *args, **kwargs)


shutil.copyfile = copy_half_then_die

if __name__ == "__main__":
    train.cli_main()
