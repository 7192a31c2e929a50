"""Print the values of KEY... of the JSON object on stdin, space-separated, for bash's `read`."""
import argparse
import json
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("keys", nargs="+", metavar="KEY")
    keys = parser.parse_args().keys
    values = json.load(sys.stdin)
    missing = [k for k in keys if k not in values]
    if missing:
        sys.exit(f"error: the JSON has no {', '.join(missing)} (it has {', '.join(values)})")
    print(" ".join(str(values[k]) for k in keys))


if __name__ == "__main__":
    main()
