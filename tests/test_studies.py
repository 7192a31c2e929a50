"""Each study's smoke configuration (fairseq_compress/studies/configs/*_smoke.yaml) end to end on tiny
data: every stage runs with the study's own recipe code, and the CSV has the rows and columns the
study promises. A rerun reuses every finished stage."""
import csv
import json
import sys

import pytest

from conftest import ROOT, one_line_error, run

STUDY = [sys.executable, "-m", "fairseq_compress.studies.distillation"]
SMOKE = ROOT / "fairseq_compress/studies/configs/distillation_smoke.yaml"


def test_distillation_study_smoke(word_mt, tmp_path):
    data, _ = word_mt
    study = STUDY + ["--config", SMOKE, f"data={data}", f"out={tmp_path / 'study'}", f"csv={tmp_path / 'kd.csv'}"]
    printed = run(study).stdout
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
    rerun = run(study)  # every stage reused: nothing trains, exports or races again
    assert (tmp_path / "kd.csv").exists() and "training ->" not in rerun.stderr


def test_distillation_study_bad_input(tmp_path):
    bad = [(["data=/nope", f"out={tmp_path}", f"csv={tmp_path / 'x.csv'}"], ["data=/nope", "prepare_mt.sh"]),
           (["--config", tmp_path / "none.yaml"], ["--config", "no such file"]),
           ([f"out={tmp_path}", f"csv={tmp_path}/x.csv", "data=/nope", "teacher.epochs=3"], ["teacher.epochs"])]
    for args, fragments in bad:
        one_line_error(run(STUDY + args, check=False), *fragments)


LOTTERY = [sys.executable, "-m", "fairseq_compress.studies.lottery"]
LOTTERY_SMOKE = ROOT / "fairseq_compress/studies/configs/lottery_smoke.yaml"


def test_lottery_study_smoke(word_mt, tmp_path):
    data, _ = word_mt
    study = LOTTERY + ["--config", LOTTERY_SMOKE, f"data={data}", f"out={tmp_path / 'study'}",
                       f"csv={tmp_path / 'lottery.csv'}"]
    printed = run(study).stdout
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
    rerun = run(study)  # every stage reused: nothing trains or translates again
    assert (tmp_path / "lottery.csv").exists() and "training ->" not in rerun.stderr


def test_lottery_study_bad_input(word_mt, tmp_path):
    data, _ = word_mt
    where = [f"out={tmp_path}", f"csv={tmp_path / 'x.csv'}"]
    bad = [(["data=/nope", *where], ["data=/nope", "prepare_mt.sh"]),
           ([f"data={data}", *where, "lottery.archs=[transformer_l2_h128]"], ["lottery.archs must name two archs"]),
           ([f"data={data}", *where, "lottery.rounds=many"], ["lottery.rounds"])]
    for args, fragments in bad:
        one_line_error(run(LOTTERY + args, check=False), *fragments)


def test_lottery_comparison_interpolates_in_log_weights():
    from fairseq_compress.studies.lottery import at_remaining

    points = [(1000, 20.0), (100, 10.0), (10, 4.0)]  # (remaining weights, BLEU), any order
    assert at_remaining(points, 1000) == 20.0 and at_remaining(points, 10) == 4.0
    assert at_remaining(points, 316) == pytest.approx(10 + 10 * 0.5, abs=0.01)  # halfway in log between 100 and 1000
    assert at_remaining(points, 5) is None and at_remaining(points, 2000) is None  # no extrapolation


QUANT_NOISE = [sys.executable, "-m", "fairseq_compress.studies.quant_noise"]
QUANT_NOISE_SMOKE = ROOT / "fairseq_compress/studies/configs/quant_noise_smoke.yaml"


def test_quant_noise_study_smoke(word_mt, tmp_path):
    data, _ = word_mt
    study = QUANT_NOISE + ["--config", QUANT_NOISE_SMOKE, f"data={data}", f"out={tmp_path / 'study'}",
                           f"csv={tmp_path / 'qn.csv'}"]
    printed = run(study).stdout
    with open(tmp_path / "qn.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["config", "seed", "bleu_fp32", "bleu_ipq", "ipq_drop", "bleu_ipq_distill",
                             "ipq_distill_drop", "bleu_int8", "mb_fp32", "mb_ipq", "mb_int8"]
    assert [(r["config"], r["seed"]) for r in rows] == [("none", "1"), ("pq0.1", "1")]
    for row in rows:
        assert all(0 <= float(row[m]) <= 100 for m in ("bleu_fp32", "bleu_ipq", "bleu_ipq_distill", "bleu_int8"))
        assert float(row["ipq_drop"]) == pytest.approx(float(row["bleu_fp32"]) - float(row["bleu_ipq"]), abs=0.011)
        assert float(row["mb_ipq"]) < float(row["mb_int8"]) < float(row["mb_fp32"])  # compressed for real
    assert "| pq0.1 |" in printed and (tmp_path / "qn.png").stat().st_size > 10_000
    # the noise configurations reached fairseq-train: PQ noise in pq0.1's training, none in none's
    logs = {name: (tmp_path / f"study/{name}/seed1/train.log").read_text() for name in ("none", "pq0.1")}
    assert "'qn_pq': 0.1" in logs["pq0.1"] and '"train_qn_pq": "' in logs["pq0.1"] and "qn_pq" not in logs["none"]
    for name in ("ipq", "ipq_distill", "int8"):  # each compressed file was scored
        assert json.loads((tmp_path / f"study/pq0.1/seed1/bleu.{name}.json").read_text())["bleu"] >= 0

    (tmp_path / "qn.csv").unlink()
    rerun = run(study)  # every stage reused: nothing trains, compresses or translates again
    assert (tmp_path / "qn.csv").exists() and "training ->" not in rerun.stderr


def test_quant_noise_study_bad_input(word_mt, tmp_path):
    data, _ = word_mt
    where = [f"data={data}", f"out={tmp_path / 'study'}"]
    bad = [([*where, f"csv={tmp_path / 'x.csv'}", "ipq.finetune_updates=0"],
            ["ipq.finetune_updates must be >= 1 (--distill fine-tunes), got 0"]),
           ([*where, f"csv={tmp_path / 'x.csv'}", "configs=[none,pq0.3]"], ["configs: unknown config 'pq0.3' (known: none"]),
           ([*where, f"csv={tmp_path / 'q.txt'}"], ["csv=", "q.txt must be a .csv file in an existing directory"]),
           (["data=/nope", f"out={tmp_path / 'study'}", f"csv={tmp_path / 'x.csv'}"], ["data=/nope", "prepare_mt.sh"])]
    for args, fragments in bad:
        one_line_error(run(QUANT_NOISE + args, check=False), *fragments)
    assert not (tmp_path / "study").exists()


def test_quant_noise_ablation_configs_noise_the_layers_or_the_embeddings(word_mt):
    """The ablation's --qn-exclude (configs/quant_noise.yaml, not run by the full study) leaves noise on the
    layers only / the token embeddings only; pq0.1, the default exclusions, noises both."""
    import re
    import shlex

    from fairseq_compress.criterions.quant_noise import DEFAULT_EXCLUDE
    from fairseq_compress.model_loading import load_model
    from fairseq_compress.modules.quant_noise import noised_modules
    from fairseq_compress.studies.quant_noise import StudyConfig
    from fairseq_compress.studies.study_config import load_config

    data, checkpoint = word_mt
    config = load_config(StudyConfig, "quant_noise", "", ["data=x", "out=x", "csv=x.csv"], "")
    model, _, _ = load_model(checkpoint, data)

    def noised(name):
        flags = shlex.split(config.noise[name])
        exclude = flags[flags.index("--qn-exclude") + 1] if "--qn-exclude" in flags else DEFAULT_EXCLUDE
        return {module for module, _ in noised_modules(model, re.compile(exclude))}

    both, layers, embeddings = noised("pq0.1"), noised("pq0.1_layers"), noised("pq0.1_embeddings")
    assert embeddings == {"encoder.embed_tokens"} <= both  # shared by the decoder, tied to the output projection
    assert layers == both - embeddings and "encoder.layers.0.fc1" in layers and "decoder.layers.1.encoder_attn.k_proj" in layers
    assert not any("output_projection" in m or "embed_positions" in m for m in both)


ELECTRA_VS_MLM = [sys.executable, "-m", "fairseq_compress.studies.electra_vs_mlm"]
ELECTRA_VS_MLM_SMOKE = ROOT / "fairseq_compress/studies/configs/electra_vs_mlm_smoke.yaml"


def electra_vs_mlm_paths(mlm_data, tmp_path):
    """The study's data keys on the mlm_data fixture: its raw text and TSVs (en/, cls/) beside their data-bins."""
    en_bin, cls_bin = mlm_data
    return [f"raw={en_bin.parent}", f"en={en_bin}", f"cls={cls_bin}", f"out={tmp_path / 'study'}",
            f"csv={tmp_path / 'runs.csv'}", f"curves={tmp_path / 'curves.csv'}"]


def test_electra_vs_mlm_study_smoke(mlm_data, tmp_path):
    study = ELECTRA_VS_MLM + ["--config", ELECTRA_VS_MLM_SMOKE, *electra_vs_mlm_paths(mlm_data, tmp_path)]
    printed = run(study).stdout
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    electra, mlm, scratch = "ELECTRA (electra_tiny, 2 layers)", "MLM (roberta_l2_h128)", "no pretraining (roberta_l2_h128)"
    assert list(rows[0]) == ["config", "seed", "accuracy", "dev_accuracy"]
    assert [(r["config"], r["seed"]) for r in rows] == [(electra, "1"), (mlm, "1"), (scratch, "1")]
    assert all(0 <= float(r[m]) <= 100 for r in rows for m in ("accuracy", "dev_accuracy"))
    assert f"| {scratch} | 0 | - | 1 |" in printed and f"| {electra} |" in printed
    with open(tmp_path / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert {(r["run"], r["metric"]) for r in curves} >= {("electra", "disc_acc_replaced"), ("electra", "gen_ppl"),
                                                        ("mlm", "ppl")}
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    # the recipe reached the pretrainings: linear decay to 0 at the calibrated updates, ELECTRA at the study's depth
    out = tmp_path / "study"
    for name in ("electra", "mlm"):
        updates = json.loads((out / name / "group.json").read_text())["pretraining updates"]
        command = (out / name / "pretrain/.train_command").read_text()
        assert updates >= 1 and f"--total-num-update {updates} " in command and "polynomial_decay" in command
        assert ("--encoder-layers 2" in command) == (name == "electra")
        assert f"--restore-file {out / name / 'pretrain/checkpoint_last.pt'}" in (out / name / "seed1/.train_command").read_text()
    assert "--restore-file" not in (out / "scratch/seed1/.train_command").read_text()

    (tmp_path / "runs.csv").unlink()
    rerun = run(study)  # every stage reused: nothing prepares, pretrains or fine-tunes again
    assert (tmp_path / "runs.csv").exists() and "training ->" not in rerun.stderr


def test_electra_vs_mlm_study_bad_input(mlm_data, tmp_path):
    paths = electra_vs_mlm_paths(mlm_data, tmp_path)
    bad = [(["pretrain.calibration_updates=10"], ["pretrain.calibration_updates must be >= 2 x pretrain.log_interval = 50",
                                                  "got 10"]),
           (["layers=5"], ["mlm.arch=roberta_l5_h256 is not a registered architecture"]),
           (["raw=/nope"], ["raw=/nope must hold en/"]),
           (["pretrain.minutes=0"], ["pretrain.minutes > 0"]),
           (["curves=/nope/c.csv"], ["curves=/nope/c.csv must be a .csv file in an existing directory"])]
    for args, fragments in bad:
        one_line_error(run(ELECTRA_VS_MLM + paths + args, check=False), *fragments)
    assert not (tmp_path / "study").exists()
