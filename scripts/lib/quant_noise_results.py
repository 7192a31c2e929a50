"""One row of the Quant-Noise study from a run directory's JSON files (fairseq-compress ipq /
quantize reports and eval_bleu.sh scores): BLEU of the fp32, iPQ (with and without --distill)
and int8 models, the iPQ drops, and MB (10^6 bytes) on disk, printed as JSON."""
import argparse
import json
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    run = parser.parse_args().run

    def read(name):
        return json.loads((run / name).read_text())

    ipq, int8 = read("ipq.json"), read("int8.json")
    bleu = {model: read(f"bleu.{model}.json")["bleu"] for model in ("checkpoint_last", "ipq", "ipq_distill", "int8")}
    print(json.dumps({"bleu_fp32": bleu["checkpoint_last"], "bleu_ipq": bleu["ipq"], "bleu_int8": bleu["int8"],
                      "ipq_drop": round(bleu["checkpoint_last"] - bleu["ipq"], 2),
                      "bleu_ipq_distill": bleu["ipq_distill"],
                      "ipq_distill_drop": round(bleu["checkpoint_last"] - bleu["ipq_distill"], 2),
                      "mb_fp32": round(ipq["fp32_model_bytes"] / 1e6, 2), "mb_ipq": round(ipq["file_bytes"] / 1e6, 2),
                      "mb_int8": round(int8["file_bytes"] / 1e6, 2)}))


if __name__ == "__main__":
    main()
