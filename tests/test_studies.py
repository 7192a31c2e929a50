"""Each study's smoke configuration (fairseq_compress/studies/configs/*_smoke.yaml) end to end on tiny
data, the study program in the test process: every stage runs with the study's own recipe code, and
the CSV has the rows and columns the study promises. A rerun reuses every finished stage: it touches
no file of the study's folder."""
import csv

import pytest

from conftest import ROOT, file_times
from fairseq_compress.studies import distillation, lottery

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


STRUCTURED = [sys.executable, "-m", "fairseq_compress.studies.structured"]
STRUCTURED_SMOKE = ROOT / "fairseq_compress/studies/configs/structured_mt_smoke.yaml"


def test_structured_study_smoke(word_mt, tmp_path):
    """Task mt end to end (task cls's race, a fresh fairseq-validate per contender and thread, does not fit the
    suite's minute: test_study_helpers.py::test_structured_stages_train_with_their_own_recipes checks its stages)."""
    data, _ = word_mt
    results = tmp_path / "results"
    study = STRUCTURED + ["--config", STRUCTURED_SMOKE, f"data={data}", f"out={tmp_path / 'study'}", f"results={results}"]
    printed = run(study).stdout
    with open(results / "structured_speed.csv") as f:
        speed = list(csv.DictReader(f))
    assert list(speed[0]) == ["contender", "method", "removed", "precision", "bleu", "mb", "sent_s_1", "sent_s_2",
                              "speedup_1", "speedup_2", "bleu_lost"]
    assert [(r["contender"], r["precision"]) for r in speed] == [
        ("dense", "fp32"), ("dense_int8", "int8"), ("dense_ft", "fp32"), ("dense_ft_int8", "int8"), ("weights50", "fp32"),
        ("ipq", "fp32"), ("small", "fp32"), ("small_int8", "int8"), ("heads_ffn50", "fp32"), ("heads_ffn50_int8", "int8")]
    by_name = {r["contender"]: r for r in speed}
    assert all(float(r["sent_s_1"]) > 0 and float(r["sent_s_2"]) > 0 and 0 <= float(r["bleu"]) <= 100 for r in speed)
    assert float(by_name["dense"]["speedup_1"]) == 1.0 and float(by_name["dense_ft"]["bleu_lost"]) == 0
    assert float(by_name["heads_ffn50"]["mb"]) < float(by_name["dense"]["mb"])  # shrunk for real
    assert by_name["heads_ffn50"]["method"] == "heads + FFN" and by_name["heads_ffn50"]["removed"] == "0.5"
    with open(results / "structured_heads.csv") as f:
        heads = list(csv.DictReader(f))
    assert list(heads[0]) == ["config", "seed", "heads_removed", "finetuned", "bleu_original", "bleu", "bleu_lost"]
    assert [(r["config"], r["seed"], r["heads_removed"], r["finetuned"]) for r in heads] == \
        [(c, "1", "0.5", ft) for c in ("none", "v_p0.2") for ft in ("False", "True")]
    with open(results / "structured_equal_speed.csv") as f:
        assert [r["precision"] for r in csv.DictReader(f)] == ["fp32", "int8"]
    assert (results / "structured_speed.png").stat().st_size and (results / "structured_heads.png").stat().st_size
    assert "| DropHead p=0.2 (V) |" in printed
    # the study's recipes reached the trainings
    out = tmp_path / "study"
    assert "--drophead-p 0.2 --drophead-schedule v" in (out / "models/v_p0.2/seed1/.train_command").read_text()
    assert "translation_timed" in (out / "small/.train_command").read_text()
    masked = (out / "finetuned/heads_ffn50/.train_command").read_text()
    assert "--task translation_pruning --prune-granularity head,neuron --prune-sparsity 0.5" in masked
    assert "--lr 0.0005" in masked and "--restore-file" in masked

    for result in results.iterdir():
        result.unlink()
    rerun = run(study)  # every stage reused: nothing trains, scores or races again
    assert (results / "structured_speed.csv").exists() and "training ->" not in rerun.stderr


def test_structured_study_bad_input(tmp_path):
    """Each bad value stops the study with one line before any work: on the command line once, then in-process
    (each command starts by importing fairseq)."""
    from fairseq_compress.studies import structured

    where = [f"out={tmp_path / 'study'}", f"results={tmp_path / 'results'}"]
    one_line_error(run(STRUCTURED + [*where, "task=lm"], check=False), "task must be mt or cls, got 'lm'")
    bad = [(["bleu_sentences=0"], ["bleu_sentences must be a positive integer, got 0"]),
           (["finetune.head_updates=0"], ["finetune.head_updates must be a positive integer, got 0"]),
           (["seeds=[]"], ["seeds: give at least one seed"]),
           (["pretrain.large=x.pt"], ["pretrain and raw are for task cls"]),
           (["task=cls", "bleu_sentences=5"], ["bleu_sentences is for task mt"]),
           (["task=cls", f"pretrain.large={tmp_path / 'none.pt'}"], ["pretrain.large: no such checkpoint"]),
           (["task=cls", "models.max_tokens=1024"], ["models.max_tokens must be null for task cls"]),
           (["data=/nope"], ["data=/nope", "prepare_mt.sh"]),
           (["models.small_arch=transformer_l5_h100"], ["models.small_arch=transformer_l5_h100 is not a plugin arch"]),
           (["masks=[{name: foo50, granularity: head, sparsity: 0.5}]"], ["masks: name 'foo50'"]),
           (["masks=[{name: heads50, granularity: heads, sparsity: 0.5}]"], ["masks: heads50: granularity"]),
           (["models.updates=many"], ["models.updates"]),
           (["--config", tmp_path / "none.yaml"], ["--config", "no such file"])]
    for args, fragments in bad:
        with pytest.raises(SystemExit) as stopped:
            structured.main([*where, *args])
        line = str(stopped.value.code)
        assert line.startswith("error: ") and "\n" not in line and all(f in line for f in fragments), line
    assert not (tmp_path / "study").exists()
