"""The bash pipelines on small local files in the standard layouts, and their bad-input errors."""
import gzip
import json

import pytest

from conftest import MOTS, ROOT, WORDS, log_records, one_line_error, run, script, sentences, write_parallel


@pytest.mark.parametrize("compress", [False, True], ids=["wmt14-layout", "gzipped"])
def test_prepare_mt_layouts_and_rerun(tmp_path, compress):
    raw = write_parallel(tmp_path / "raw", compress)
    out = tmp_path / "bin"
    run(script("prepare_mt.sh") + [raw, out, "--vocab-size", "40"])
    for name in ("spm.model", "dict.en.txt", "dict.fr.txt", "train.en-fr.en.bin", "test.en-fr.fr.idx", "raw/test.fr"):
        assert (out / name).exists(), name
    expected_reference = "\n".join(sentences(30, MOTS, offset=len("test"))) + "\n"
    assert (out / "raw/test.fr").read_text() == expected_reference
    before = (out / "train.en-fr.en.bin").stat().st_mtime_ns
    rerun = run(script("prepare_mt.sh") + [raw, out, "--vocab-size", "40"])
    assert "up to date" in rerun.stderr
    assert (out / "train.en-fr.en.bin").stat().st_mtime_ns == before


def test_prepare_mt_refuses_to_overwrite_without_force(tmp_path):
    raw = write_parallel(tmp_path / "raw")
    out = tmp_path / "bin"
    run(script("prepare_mt.sh") + [raw, out, "--vocab-size", "40"])
    dictionary = (out / "dict.en.txt").read_text()
    error = one_line_error(run(script("prepare_mt.sh") + [raw, out, "--vocab-size", "41"], check=False), str(out), "--force")
    assert "FORCE=1" in error
    assert (out / "dict.en.txt").read_text() == dictionary
    run(script("prepare_mt.sh") + [raw, out, "--vocab-size", "41", "--force"])
    assert "vocab=41" in (out / ".stamp").read_text()


def test_prepare_mt_bad_inputs(tmp_path):
    one_line_error(run(script("prepare_mt.sh") + [tmp_path / "nope", tmp_path / "out"], check=False), "SRC_DIR", "nope")
    raw = write_parallel(tmp_path / "raw")
    (raw / "valid.fr").write_text("un deux trois\n")
    one_line_error(run(script("prepare_mt.sh") + [raw, tmp_path / "out"], check=False), "valid.en", "valid.fr", "line-aligned")
    write_parallel(raw)
    (raw / "test.en").unlink()
    one_line_error(run(script("prepare_mt.sh") + [raw, tmp_path / "out"], check=False), "test.en")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def synthetic_mlm(tmp_path_factory):
    work = tmp_path_factory.mktemp("mlm")
    raw = work / "raw"
    raw.mkdir()
    with gzip.open(raw / "train.txt.gz", "wt") as f:
        f.write("\n".join(sentences(500, WORDS)) + "\n\n")
    (raw / "valid.txt").write_text("\n".join(sentences(20, WORDS, offset=3)) + "\n")
    run(script("prepare_mlm.sh") + [raw, work / "bin", "--vocab-size", "30"])
    return work / "bin"


def write_tsv(path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))


def test_prepare_mlm_output(synthetic_mlm):
    for name in ("spm.model", "dict.txt", "train.bin", "valid.idx"):
        assert (synthetic_mlm / name).exists(), name


def test_prepare_glue_single_sentence(tmp_path, synthetic_mlm):
    task = tmp_path / "task"
    task.mkdir()
    for split, n in (("train", 60), ("dev", 10), ("test", 10)):
        write_tsv(task / f"{split}.tsv", ["sentence", "label"],
                  [(s, "red" if "red" in s else "other") for s in sentences(n, WORDS, offset=n)])
    out = tmp_path / "bin"
    result = run(script("prepare_glue.sh") + [task, out, synthetic_mlm])
    assert "2 classes" in result.stderr
    assert sorted(line.split()[0] for line in (out / "label/dict.txt").read_text().splitlines()) == ["other", "red"]
    assert (out / "input0/dict.txt").read_text() == (synthetic_mlm / "dict.txt").read_text()
    for name in ("input0/train.bin", "input0/valid.bin", "input0/test.bin", "label/test.bin", "spm.model"):
        assert (out / name).exists(), name
    assert not (out / "input1").exists()


def test_prepare_glue_mnli_layout(tmp_path, synthetic_mlm):
    header = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
              "sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label").split()
    labels = ["entailment", "neutral", "contradiction"]
    task = tmp_path / "MNLI"
    task.mkdir()
    for split, n in (("train", 60), ("dev_matched", 12)):
        rows = [(str(i), "1", "2", "fiction", "(a)", "(b)", "(a)", "(b)", a, b, "neutral", labels[i % 3])
                for i, (a, b) in enumerate(zip(sentences(n, WORDS), sentences(n, WORDS, offset=5)))]
        write_tsv(task / f"{split}.tsv", header, rows)
    write_tsv(task / "test_matched.tsv", header[:10], [(str(i), "1", "2", "f", "(a)", "(b)", "(a)", "(b)", "a red cat", "a dog") for i in range(5)])
    out = tmp_path / "bin"
    result = run(script("prepare_glue.sh") + [task, out, synthetic_mlm])
    assert "3 classes" in result.stderr
    for name in ("input0/valid.bin", "input1/train.bin", "input1/test.bin", "label/valid.bin"):
        assert (out / name).exists(), name
    assert not (out / "label/test.bin").exists()  # GLUE test sets have no labels


def test_prepare_glue_bad_inputs(tmp_path, synthetic_mlm):
    task = tmp_path / "task"
    task.mkdir()
    write_tsv(task / "train.tsv", ["sentence", "label"], [("a red cat", "red"), ("a dog", "other")])
    (task / "train.tsv").write_text((task / "train.tsv").read_text() + "a row without label\n")
    write_tsv(task / "dev.tsv", ["sentence", "label"], [("a red dog", "red")])
    error = one_line_error(run(script("prepare_glue.sh") + [task, tmp_path / "out", synthetic_mlm], check=False),
                           "train.tsv line 4", "1 tab-separated columns")
    assert "header has 2" in error
    assert not (tmp_path / "out").exists()
    one_line_error(run(script("prepare_glue.sh") + [task, tmp_path / "out", tmp_path / "nope"], check=False), "PRETRAIN_DATA")
    one_line_error(run(script("prepare_glue.sh") + [tmp_path / "nope", tmp_path / "out", synthetic_mlm], check=False), "TASK_DIR")


def test_train_mt_rejects_unknown_arch_before_training(tmp_path):
    raw = write_parallel(tmp_path / "raw")
    run(script("prepare_mt.sh") + [raw, tmp_path / "bin", "--vocab-size", "40"])
    error = one_line_error(run(script("train_mt.sh") + [tmp_path / "bin", tmp_path / "ckpt", "--arch", "transformer_l5_h100", "--max-update", "1"], check=False), "--arch transformer_l5_h100")
    assert "registered" in error
    assert not (tmp_path / "ckpt").exists()


def test_train_mt_reruns_resume_and_refuse_other_runs(tmp_path):
    raw = write_parallel(tmp_path / "raw")
    run(script("prepare_mt.sh") + [raw, tmp_path / "bin", "--vocab-size", "40"])
    train = script("train_mt.sh") + [tmp_path / "bin", tmp_path / "ckpt", "--arch", "transformer_l2_h128", "--max-update", "2"]
    run(train)
    checkpoint = tmp_path / "ckpt/checkpoint_last.pt"
    saved = checkpoint.read_bytes()
    assert "nothing to do" in run(train).stderr
    error = one_line_error(run(train[:-1] + ["3"], check=False), "ckpt", "another run", "--force")
    assert error and checkpoint.read_bytes() == saved
    run(train[:-1] + ["3", "--force"])
    assert log_records((tmp_path / "ckpt/train.log").read_text(), "train")[-1]["num_updates"] == 3


def test_a_run_resumes_from_another_checkout_and_its_stamp_keeps_data_paths_inside_the_checkout(tmp_path):
    # Only the plugin's path becomes $ROOT/...: a data or save dir inside the checkout stays literal
    # (rewriting it too made a run started from one checkout refuse to resume from another).
    stamp_here = f"""source {ROOT}/scripts/lib/common.sh
    run_training {tmp_path}/run true "$USER_DIR" "$ROOT/data-bin/x"
    cat {tmp_path}/run/.train_command"""
    assert run(["bash", "-c", stamp_here]).stdout == f"true $ROOT/fairseq_compress {ROOT}/data-bin/x \n"
    elsewhere = f"""source {ROOT}/scripts/lib/common.sh
    ROOT=/elsewhere; USER_DIR=/elsewhere/fairseq_compress
    run_training {tmp_path}/run true "$USER_DIR" {ROOT}/data-bin/x"""
    assert "nothing to do" in run(["bash", "-c", elsewhere]).stderr


def test_pretrain_finetune_and_summarize(mlm_data, tmp_path):
    en_bin, cls_bin = mlm_data
    pretrain = script("pretrain_mlm.sh") + [en_bin, tmp_path / "pre", "--arch", "electra_tiny", "--criterion", "electra",
                                            "--max-update", "3", "--tokens-per-sample", "64", "--max-tokens", "1024",
                                            "--schedule", "linear", "--warmup", "1", "--", "--log-interval", "1"]
    run(pretrain)
    assert "nothing to do" in run(pretrain).stderr
    log = (tmp_path / "pre/train.log").read_text()
    # warmup to the peak at update 1, then linear decay to 0 at --max-update 3
    assert [r["lr"] for r in log_records(log, "train_inner")] == [0.0005, 0.00025, 0]
    # train_wall is logged in whole seconds, so tiny updates may read 0 (the arithmetic: tests/test_study_helpers.py)
    assert float(run(["python", "-m", "fairseq_compress.studies.train_stats", "--seconds-per-update", tmp_path / "pre/train.log"]).stdout) >= 0
    stats = json.loads(run(["python", "-m", "fairseq_compress.studies.train_stats", "--columns", tmp_path / "pre/train.log"]).stdout)
    assert stats["pretraining updates"] == 3 and stats["tokens/s"] > 0
    finetune = script("finetune_cls.sh") + [cls_bin, tmp_path / "group/seed1", "--arch", "electra_tiny",
                                            "--pretrained", tmp_path / "pre/checkpoint_last.pt", "--max-update", "4",
                                            "--max-positions", "64", "--batch-size", "16"]
    result = json.loads(run(finetune).stdout)
    assert 0 <= result["accuracy"] <= 100 and 0 <= result["dev_accuracy"] <= 100
    assert json.loads((tmp_path / "group/seed1/accuracy.json").read_text()) == result
    assert log_records((tmp_path / "group/seed1/train.log").read_text(), "train")[-1]["num_updates"] == 4
    (tmp_path / "group/group.json").write_text('{"pretraining updates": 3}')
    table = run(["python", "-m", "fairseq_compress.studies.summarize_runs", f"electra={tmp_path / 'group'}", "--metric", "accuracy",
                 "dev_accuracy", "--metric-file", "accuracy.json", "--csv", tmp_path / "runs.csv"]).stdout
    assert "| electra | 3 | 1 |" in table
    assert (tmp_path / "runs.csv").read_text().splitlines()[0] == "config,seed,accuracy,dev_accuracy"


def test_pretrain_and_finetune_bad_inputs(mlm_data, tmp_path):
    en_bin, cls_bin = mlm_data
    one_line_error(run(script("pretrain_mlm.sh") + [en_bin, tmp_path / "pre", "--arch", "roberta_l2_h128",
                                                    "--criterion", "mlm", "--max-update", "1"], check=False),
                   "--criterion must be masked_lm or electra")
    one_line_error(run(script("pretrain_mlm.sh") + [cls_bin, tmp_path / "pre", "--arch", "roberta_l2_h128",
                                                    "--max-update", "1"], check=False), "prepare_mlm.sh")
    one_line_error(run(script("finetune_cls.sh") + [cls_bin, tmp_path / "ft", "--arch", "roberta_l2_h128",
                                                    "--pretrained", tmp_path / "missing.pt"], check=False),
                   "--pretrained", "missing.pt")
    one_line_error(run(script("finetune_cls.sh") + [en_bin, tmp_path / "ft", "--arch", "roberta_l2_h128"], check=False),
                   "prepare_glue.sh")
    one_line_error(run(script("pretrain_mlm.sh") + [en_bin, tmp_path / "pre", "--arch", "roberta_l2_h128",
                                                    "--minutes", "1", "--schedule", "linear"], check=False),
                   "--schedule linear needs --max-update")
    one_line_error(run(script("pretrain_mlm.sh") + [en_bin, tmp_path / "pre", "--arch", "roberta_l2_h128",
                                                    "--max-update", "1", "--schedule", "cosine"], check=False),
                   "--schedule must be inverse_sqrt or linear, got 'cosine'")
    # a budget of 0 minutes is none: with --max-update 0 (train_mt.sh's default) the run would never stop
    one_line_error(run(script("pretrain_mlm.sh") + [en_bin, tmp_path / "pre", "--arch", "roberta_l2_h128",
                                                    "--minutes", "0.00"], check=False),
                   "--minutes must be a positive number, got '0.00'")
    assert not any((tmp_path / name).exists() for name in ("pre", "ft", "study"))
