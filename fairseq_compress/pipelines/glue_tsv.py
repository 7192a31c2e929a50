"""Split a GLUE-style TSV into the input0 / input1 / label text files that
fairseq's RoBERTa GLUE recipe binarizes.

Columns are found by header name, so single-sentence tasks (``sentence\\tlabel``),
pair tasks (``sentence1``/``sentence2``, QNLI's ``question``/``sentence``, QQP's
``question1``/``question2``) and MNLI's 12-column layout (``gold_label``) all work.
"""
import argparse
import gzip
import sys

FIRST_INPUT = ("sentence1", "question1", "question", "sentence")
SECOND_INPUT = ("sentence2", "question2", "sentence")
LABEL = ("gold_label", "label")


def open_text(path):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def find_columns(header, path):
    first = next((name for name in FIRST_INPUT if name in header), None)
    if first is None:
        sys.exit(
            f"error: {path}: the header names no sentence column (expected one of "
            f"{', '.join(FIRST_INPUT)}; got {', '.join(header)})"
        )
    second = next((name for name in SECOND_INPUT if name in header and name != first), None)
    label = next((name for name in LABEL if name in header), None)
    return [header.index(first)] + ([header.index(second)] if second else []), (
        header.index(label) if label else None
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="TSV file with a header line (plain or .gz)")
    parser.add_argument("--out-prefix", required=True, help="writes PREFIX.input0 [.input1] [.label]")
    args = parser.parse_args()

    with open_text(args.input) as f:
        header = f.readline().rstrip("\n").split("\t")
        input_columns, label_column = find_columns(header, args.input)
        outputs = [open(f"{args.out_prefix}.input{i}", "w", encoding="utf-8") for i in range(len(input_columns))]
        label_out = open(f"{args.out_prefix}.label", "w", encoding="utf-8") if label_column is not None else None
        rows = 0
        for line_number, line in enumerate(f, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(header):
                sys.exit(
                    f"error: {args.input} line {line_number}: {len(fields)} tab-separated columns, "
                    f"but the header has {len(header)}"
                )
            for out, column in zip(outputs, input_columns):
                out.write(fields[column].strip() + "\n")
            if label_out:
                label_out.write(fields[label_column].strip() + "\n")
            rows += 1
    for out in outputs + ([label_out] if label_out else []):
        out.close()
    if rows == 0:
        sys.exit(f"error: {args.input} has a header but no rows")
    print(f"{len(input_columns)} {'label' if label_out else 'nolabel'} {rows}")


if __name__ == "__main__":
    main()
