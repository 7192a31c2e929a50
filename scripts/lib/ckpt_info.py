"""What a fairseq checkpoint was trained as: prints `TASK ARCH DATA` (the stock
task the plugin's task extends: its name without _pruning / _timed; the arch;
the data dir), read with the safe loader."""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fairseq_compress.checkpoint_safety import load_state  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ckpt")
    cfg = load_state(parser.parse_args().ckpt)["cfg"]
    task = re.sub(r"_(pruning|timed)$", "", cfg["task"]["_name"])
    model = cfg["model"]  # a Namespace for archs registered with add_args, else a dict
    arch = getattr(model, "arch", None) or model.get("arch") or model.get("_name")
    print(task, arch, cfg["task"]["data"])


if __name__ == "__main__":
    main()
