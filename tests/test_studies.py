"""Each study's smoke configuration (fairseq_compress/studies/configs/*_smoke.yaml) end to end on tiny
data, the study program in the test process: every stage runs with the study's own recipe code, and
the CSV has the rows and columns the study promises. A rerun reuses every finished stage: it touches
no file of the study's folder."""
import csv
import gzip
import json
import logging
import os

import pytest

from conftest import ROOT, TRAIN_MLM, file_times, run
from fairseq_compress.studies import cls_regime, demo, demo_table, distillation, distillation_cls, lottery

CONFIGS = ROOT / "fairseq_compress/studies/configs"


def test_distillation_study_smoke(word_mt, study, tmp_path):
    data, _ = word_mt
    args = ["--config", CONFIGS / "distillation_smoke.yaml", f"data={data}", f"out={tmp_path / 'study'}",
            f"csv={tmp_path / 'kd.csv'}"]
    printed = study.run(distillation, args)
    with open(tmp_path / "kd.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "arch", "seed", "beam", "bleu", "mb", "sentences_per_s", "speed_vs_teacher_beam5"]
    per_seed = ["scratch", "word_kd", "seq_kd", "seq_word_kd", "deep_shallow_seq_kd"]
    assert [(r["model"], r["seed"]) for r in rows] == \
        [("teacher", "1")] + [(m, "1") for m in per_seed] + [("pruned_kd", "1")]
    assert all(float(r["sentences_per_s"]) > 0 and 0 <= float(r["bleu"]) <= 100 for r in rows)
    assert float(rows[0]["speed_vs_teacher_beam5"]) == 1.0 and float(rows[0]["bleu"]) > 50  # the teacher learned
    pruned = rows[-1]
    assert float(pruned["mb"]) < float(rows[0]["mb"])  # shrunk for real
    assert "| teacher | 5 |" in printed and (tmp_path / "kd.png").stat().st_size > 0
    # the study's recipe reached the trainings: the KD students ran the distillation criterion on the KD data
    log = (tmp_path / "study/seq_word_kd/seed1/train.log").read_text()
    assert "kd_loss" in log and "kd_data" in log
    assert "kd_loss" not in (tmp_path / "study/seq_kd/seed1/train.log").read_text()

    (tmp_path / "kd.csv").unlink()
    before = file_times(tmp_path / "study")
    study.run(distillation, args)  # every stage reused: nothing trains, exports or races again
    assert (tmp_path / "kd.csv").exists() and file_times(tmp_path / "study") == before


def test_distillation_study_bad_input(study, tmp_path):
    bad = [(["data=/nope", f"out={tmp_path}", f"csv={tmp_path / 'x.csv'}"], ["data=/nope", "prepare_mt.sh"]),
           (["--config", tmp_path / "none.yaml"], ["--config", "no such file"]),
           ([f"out={tmp_path}", f"csv={tmp_path}/x.csv", "data=/nope", "teacher.epochs=3"], ["teacher.epochs"])]
    for args, fragments in bad:
        study.error(distillation, args, *fragments)


def distillation_cls_args(mlm_data, tmp_path):
    return ["--config", CONFIGS / "distillation_cls_smoke.yaml", f"cls={mlm_data[1]}", f"out={tmp_path / 'study'}",
            f"csv={tmp_path / 'kd_cls.csv'}"]


def test_classification_distillation_study_smoke(mlm_data, study, tmp_path):
    args = distillation_cls_args(mlm_data, tmp_path)
    printed = study.run(distillation_cls, args)
    with open(tmp_path / "kd_cls.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "arch", "seed", "accuracy", "dev_accuracy", "mb", "sentences_per_s_1",
                             "sentences_per_s_2", "speed_vs_teacher"]
    assert [(r["model"], r["arch"], r["seed"]) for r in rows] == \
        [("teacher", "roberta_l2_h256", "1"), ("scratch", "roberta_l2_h128", "1"), ("logit_kd", "roberta_l2_h128", "1")]
    assert all(0 <= float(r["accuracy"]) <= 100 and float(r["sentences_per_s_1"]) > 0 for r in rows)
    assert float(rows[0]["speed_vs_teacher"]) == 1.0 and float(rows[1]["mb"]) < float(rows[0]["mb"])
    assert rows[1]["sentences_per_s_1"] == rows[2]["sentences_per_s_1"]  # one race per arch
    assert "| logit_kd | roberta_l2_h128 |" in printed
    # the study's budget and KD reached the trainings: the KD student learned from the teacher's best checkpoint
    out = tmp_path / "study"
    kd = (out / "logit_kd/seed1/.train_command").read_text()
    assert "--criterion distillation --kd-criterion sentence_prediction" in kd and "--max-update 4 " in kd
    assert f"--teacher-path {out / 'teacher/checkpoint_best.pt'}" in kd
    assert "kd_loss" in (out / "logit_kd/seed1/train.log").read_text()
    assert "--criterion distillation" not in (out / "scratch/seed1/.train_command").read_text()

    (tmp_path / "kd_cls.csv").unlink()
    before = file_times(out)
    study.run(distillation_cls, args)  # every stage reused: nothing fine-tunes or races again
    assert (tmp_path / "kd_cls.csv").exists() and file_times(out) == before


def test_classification_distillation_study_bad_input(mlm_data, study, tmp_path):
    args = distillation_cls_args(mlm_data, tmp_path)
    bad = [([f"cls={tmp_path}"], ["is not a task of scripts/prepare_glue.sh"]),
           ([f"teacher.checkpoint={tmp_path / 'none.pt'}"], ["teacher.checkpoint: no such checkpoint"]),
           (["kd.weight=1.5"], ["kd.weight must be in [0, 1]"]), (["kd.temperature=0"], ["kd.temperature > 0"]),
           (["updates=0"], ["updates must be >= 1"]), (["race.sentences=0"], ["race.sentences and updates must be >= 1"]),
           (["seeds=[]"], ["seeds must not be empty"]),
           ([f"csv={tmp_path / 'none/x.csv'}"], ["csv=", "must be a .csv file in an existing directory"])]
    for overrides, fragments in bad:
        study.error(distillation_cls, args + overrides, *fragments)
    assert not (tmp_path / "study").exists()


def test_lottery_study_smoke(word_mt, study, tmp_path):
    data, _ = word_mt
    args = ["--config", CONFIGS / "lottery_smoke.yaml", f"data={data}", f"out={tmp_path / 'study'}",
            f"csv={tmp_path / 'lottery.csv'}"]
    printed = study.run(lottery, args)
    with open(tmp_path / "lottery.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["arch", "arm", "seed", "round", "bleu", "remaining_weights", "sparsity",
                             "small_bleu_at_same_remaining", "large_minus_small"]
    small, large = "transformer_e3d1_h128", "transformer_l2_h128"
    per_arch = [(arm, "1", str(r)) for arm in ("imp_rewind", "imp_init", "random_reinit") for r in range(3)]
    per_arch += [("oneshot", "1", "1"), ("oneshot", "1", "2")]
    assert [(r["arch"], r["arm"], r["seed"], r["round"]) for r in rows] == \
        [(arch, *key) for arch in (small, large) for key in per_arch]
    for row in rows:  # each model pruned as its round says: 1 - 0.8^r of its targets
        assert float(row["sparsity"]) == pytest.approx(1 - 0.8 ** int(row["round"]), abs=1e-3)
        assert 0 <= float(row["bleu"]) <= 100
    compared = [r for r in rows if r["large_minus_small"] != ""]
    assert compared and all(r["arch"] == large for r in compared)  # the larger ticket against the smaller
    for row in compared:
        assert float(row["large_minus_small"]) == pytest.approx(
            float(row["bleu"]) - float(row["small_bleu_at_same_remaining"]), abs=0.011)
    assert "| transformer_l2_h128 | imp_rewind |" in printed and (tmp_path / "lottery.png").stat().st_size > 0

    (tmp_path / "lottery.csv").unlink()
    before = file_times(tmp_path / "study")
    study.run(lottery, args)  # every stage reused: nothing trains or translates again
    assert (tmp_path / "lottery.csv").exists() and file_times(tmp_path / "study") == before


def test_lottery_study_bad_input(word_mt, study, tmp_path):
    data, _ = word_mt
    where = [f"out={tmp_path}", f"csv={tmp_path / 'x.csv'}"]
    bad = [(["data=/nope", *where], ["data=/nope", "prepare_mt.sh"]),
           ([f"data={data}", *where, "lottery.archs=[transformer_l2_h128]"], ["lottery.archs must name two archs"]),
           ([f"data={data}", *where, "lottery.rounds=many"], ["lottery.rounds"])]
    for args, fragments in bad:
        study.error(lottery, args, *fragments)


def test_lottery_comparison_interpolates_in_log_weights():
    at_remaining = lottery.at_remaining
    points = [(1000, 20.0), (100, 10.0), (10, 4.0)]  # (remaining weights, BLEU), any order
    assert at_remaining(points, 1000) == 20.0 and at_remaining(points, 10) == 4.0
    assert at_remaining(points, 316) == pytest.approx(10 + 10 * 0.5, abs=0.01)  # halfway in log between 100 and 1000
    assert at_remaining(points, 5) is None and at_remaining(points, 2000) is None  # no extrapolation


def cls_regime_args(mlm_data, tmp_path):
    """The smoke config's inputs: the cls slice with its first 256 training sentences (an epoch of 4 updates at
    batch 64: six fine-tunings of an epoch fit the suite's minute) as .tsv.gz (Naive Bayes reads them),
    prepared by scripts/prepare_glue.sh, and a masked LM pretrained for 2 updates."""
    en_bin, _ = mlm_data
    raw = tmp_path / "raw_cls"
    raw.mkdir()
    for split in ("train", "dev", "test"):
        lines = (en_bin.parent / "cls" / f"{split}.tsv").read_text().splitlines(keepends=True)
        (raw / f"{split}.tsv.gz").write_bytes(gzip.compress("".join(lines[:257] if split == "train" else lines).encode()))
    cls_bin = tmp_path / "cls-bin"
    run(["bash", ROOT / "scripts/prepare_glue.sh", raw, cls_bin, en_bin])
    pretrained = tmp_path / "mlm"
    run(["fairseq-train", en_bin, *TRAIN_MLM, "--task", "masked_lm", "--criterion", "masked_lm", "--arch",
         "roberta_l2_h128", "--tokens-per-sample", "128", "--max-tokens", "1024", "--max-update", "2",
         "--save-dir", pretrained])
    return ["--config", CONFIGS / "cls_regime_smoke.yaml", f"cls={cls_bin}", f"raw_cls={raw}",
            f"out={tmp_path / 'study'}", f"csv={tmp_path / 'regime.csv'}", f"curves={tmp_path / 'curves.csv'}",
            f"starts.mlm.checkpoint={pretrained / 'checkpoint_last.pt'}"]


def test_cls_regime_study_smoke(mlm_data, study, tmp_path):
    args = cls_regime_args(mlm_data, tmp_path)
    printed = study.run(cls_regime, args)
    out = tmp_path / "study"
    regime = json.loads((out / "regime.json").read_text())
    assert regime["lr"] in (0.0001, 0.001) and regime["batch_size"] == 64 and 1 <= regime["updates"] <= 4
    with open(tmp_path / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert list(curves[0]) == ["start", "lr", "batch_size", "num_updates", "dev_accuracy"]
    runs = {(c["start"], c["lr"]) for c in curves}
    assert runs == {(s, lr) for s in ("scratch", "mlm") for lr in ("0.0001", "0.001")}
    assert all(sum((c["start"], c["lr"]) == r for c in curves) >= 2 for r in runs)  # a curve, not one point
    # the regime is where every searched start's curve reaches its plateau, at the chosen lr
    chosen = [c for c in curves if float(c["lr"]) == regime["lr"]]
    for start in ("scratch", "mlm"):
        curve = [(int(c["num_updates"]), float(c["dev_accuracy"])) for c in chosen if c["start"] == start]
        assert cls_regime.plateau(curve, 0.5) <= regime["updates"]
    with open(tmp_path / "regime.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["config"], r["seed"]) for r in rows] == [("scratch", "1"), ("mlm", "1")]
    assert all(0 <= float(r["accuracy"]) <= 100 for r in rows) and (tmp_path / "curves.png").stat().st_size > 10_000
    assert "Naive Bayes dev accuracy" in printed
    best = max(float(c["dev_accuracy"]) for c in curves if (c["start"], c["lr"]) == ("mlm", "0.001"))
    assert f"| mlm | 0.001 | 64 | {best:.2f} |" in printed  # the search's table
    # the regime reached the measured fine-tunings, the pretrained one from its checkpoint
    mlm = (out / "measure/mlm/seed1/.train_command").read_text()
    assert f"--max-update {regime['updates']} " in mlm and "--batch-size 64" in mlm and "--restore-file" in mlm
    assert "--restore-file" not in (out / "measure/scratch/seed1/.train_command").read_text()

    (tmp_path / "regime.csv").unlink()
    before = file_times(out)
    study.run(cls_regime, args)  # every stage reused: nothing fine-tunes again
    assert (tmp_path / "regime.csv").exists() and file_times(out) == before


def test_cls_regime_study_bad_input(mlm_data, study, tmp_path):
    args = cls_regime_args(mlm_data, tmp_path)
    bad = [(["measure=[bert]"], ["start 'bert' is not one of starts (scratch, mlm, electra)"]),
           ([f"starts.mlm.checkpoint={tmp_path / 'none.pt'}"], ["starts.mlm.checkpoint: no such checkpoint"]),
           ([f"raw_cls={tmp_path}"], ["raw_cls=", "must hold train.tsv.gz"]),
           (["search.lrs=[]"], ["search.lrs, search.batch_sizes, search.starts, measure and seeds must not be empty"]),
           (["search.epochs=0"], ["search.epochs, search.validations_per_epoch, jobs and every batch size must be >= 1"]),
           ([f"cls={tmp_path}"], ["is not a task of scripts/prepare_glue.sh"])]
    for overrides, fragments in bad:
        study.error(cls_regime, args + overrides, *fragments)
    assert not (tmp_path / "study").exists()


DEMO_ARTIFACTS = ["dense fp32", "int8 (fairseq-generate)", "shrunk 50% heads+FFN, fine-tuned", "shrunk + int8", "iPQ",
                  "shrunk, CTranslate2 int8"]


def test_demo_smoke(word_mt, study, tmp_path, caplog):
    """The demo's stages end to end on a prepared data-bin: every artifact's row, its recipe in the trainings,
    nothing of matplotlib's set-up logged, and a rerun that makes nothing."""
    data, _ = word_mt
    out, results = tmp_path / "demo", tmp_path / "results"
    results.mkdir()
    args = ["--config", CONFIGS / "demo_smoke.yaml", f"data={data}", f"out={out}", f"results={results}"]
    caplog.set_level(logging.DEBUG)
    printed = study.run(demo, args)
    with open(results / "demo.csv") as f:
        rows = {row["artifact"]: row for row in csv.DictReader(f)}
    assert list(rows) == DEMO_ARTIFACTS and list(rows["iPQ"]) == demo_table.COLUMNS
    assert all(0 <= float(r["bleu"]) <= 100 and float(r["sentences_per_s"]) > 0 for r in rows.values())
    mb = {name: float(row["mb"]) for name, row in rows.items()}
    assert mb["iPQ"] < mb["int8 (fairseq-generate)"] < mb["dense fp32"]
    assert mb["shrunk + int8"] < mb["shrunk 50% heads+FFN, fine-tuned"] < mb["dense fp32"]
    assert "| shrunk, CTranslate2 int8 |" in printed and "sacreBLEU signature: nrefs:1" in printed
    assert (results / "demo.png").stat().st_size > 10_000
    assert not [r for r in caplog.records if r.name.startswith("matplotlib") and r.levelno < logging.WARNING]
    assert "--stop-time-minutes 0.05" in (out / "dense/.train_command").read_text()
    tuned = (out / "shrunk_ft/.train_command").read_text()
    assert "--max-update 4" in tuned and "--lr 0.0005" in tuned and f"--restore-file {out / 'shrunk.pt'}" in tuned

    before = file_times(out)
    study.run(demo, args)  # every stage reused
    assert file_times(out) == before


def test_demo_bad_input(word_mt, study, tmp_path):
    data, _ = word_mt
    args = ["--config", CONFIGS / "demo_smoke.yaml", f"data={data}", f"out={tmp_path / 'demo'}", f"results={tmp_path}"]
    bad = [(["minutes=0"], ["minutes must be a positive number", "got 0"]),
           (["shrink.heads_keep=0"], ["shrink.heads_keep must be a fraction in (0, 1]"]),
           (["finetune.updates=0"], ["finetune.updates must be a positive integer, got 0"]),
           (["ipq.config=bert"], ["ipq.config=bert: no fairseq_compress/config/ipq/bert.yaml"]),
           ([f"raw={tmp_path}"], [f"raw={tmp_path} holds no train.en(.gz)"]),
           ([f"data={tmp_path}"], [f"with raw null, data={tmp_path} must be a data-bin of scripts/prepare_mt.sh"]),
           ([f"results={tmp_path / 'none'}"], ["results=", "is not a directory"]),
           (["minutes=soon"], ["minutes"])]
    for overrides, fragments in bad:
        study.error(demo, args + overrides, *fragments)
    assert not (tmp_path / "demo").exists()
    study.command_line_error(demo, args + ["minutes=0"], "minutes must be a positive number")


def test_demo_remakes_what_a_newer_source_is_made_from(tmp_path):
    source, out = tmp_path / "model.pt", tmp_path / "int8.pt"
    source.touch()
    demo.make(out, source, ["touch", out])
    made = out.stat().st_mtime_ns
    demo.make(out, source, ["false"])  # newer than its source: not run
    os.utime(source, ns=(made + 10**9, made + 10**9))  # the source remade
    demo.make(out, source, ["touch", out])
    assert out.stat().st_mtime_ns > made


def test_demo_table_rows_of_checkpoints_and_ctranslate2_directories(mt_checkpoint, tmp_path):
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    (ct2 / "model.bin").write_bytes(b"x" * 2_000_000)
    rows = []
    for name, artifact, speed in (("dense", mt_checkpoint, 49.35), ("ct2", ct2, 303.67)):
        bleu = tmp_path / f"{name}.bleu.json"
        bleu.write_text(json.dumps({"bleu": 12.5, "signature": "nrefs:1|case:mixed", "sentences": 3, "sentences_per_s": speed}))
        rows.append(demo_table.row(name, artifact, bleu))
    old = tmp_path / "old.bleu.json"
    old.write_text(json.dumps({"bleu": 12.5, "signature": "nrefs:1|case:mixed", "sentences": 3}))
    with pytest.raises(SystemExit, match="old.bleu.json has no sentences_per_s .* delete it and rerun"):
        demo_table.row("old", ct2, old)
    assert rows[1]["mb"] == 2.0 and rows[1]["sentences_per_s"] == 303.67
    model_bytes = json.loads(run(["fairseq-compress", "size", "--path", mt_checkpoint, "--json"]).stdout)["model_bytes"]
    assert rows[0]["mb"] == round(model_bytes / 1e6, 2)  # the model, not the Adam state beside it
    shown = demo_table.markdown(rows)
    assert "| ct2 | 2.00 | 12.50 | 303.7 |" in shown and "nrefs:1|case:mixed" in shown
