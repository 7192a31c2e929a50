"""The Quant-Noise study and ELECTRA vs masked LM: each smoke configuration end to end on tiny data, the CSV's
rows and columns, a rerun that trains nothing; their bad input."""
import csv
import json

import pytest

from conftest import ROOT, file_times
from fairseq_compress.studies import electra_vs_mlm, quant_noise


QUANT_NOISE_SMOKE = ROOT / "fairseq_compress/studies/configs/quant_noise_smoke.yaml"


def test_quant_noise_study_smoke(word_mt, study, tmp_path):
    data, _ = word_mt
    args = ["--config", QUANT_NOISE_SMOKE, f"data={data}", f"out={tmp_path / 'study'}", f"csv={tmp_path / 'qn.csv'}"]
    printed = study.run(quant_noise, args)
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
    before = file_times(tmp_path / "study")
    study.run(quant_noise, args)  # every stage reused: nothing trains, compresses or translates again
    assert (tmp_path / "qn.csv").exists() and file_times(tmp_path / "study") == before


def test_quant_noise_study_bad_input(word_mt, study, tmp_path):
    """Each bad value stops the study with one line before any work: on the command line once, then in-process."""
    data, _ = word_mt
    where = [f"data={data}", f"out={tmp_path / 'study'}"]
    bad = [([*where, f"csv={tmp_path / 'x.csv'}", "ipq.finetune_updates=0"],
            ["ipq.finetune_updates must be >= 1 (--distill fine-tunes), got 0"]),
           ([*where, f"csv={tmp_path / 'x.csv'}", "configs=[none,pq0.3]"], ["configs: unknown config 'pq0.3' (known: none"]),
           ([*where, f"csv={tmp_path / 'q.txt'}"], ["csv=", "q.txt must be a .csv file in an existing directory"]),
           (["data=/nope", f"out={tmp_path / 'study'}", f"csv={tmp_path / 'x.csv'}"], ["data=/nope", "prepare_mt.sh"])]
    study.command_line_error(quant_noise, bad[0][0], *bad[0][1])
    for args, fragments in bad[1:]:
        study.error(quant_noise, args, *fragments)
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


ELECTRA_VS_MLM_SMOKE = ROOT / "fairseq_compress/studies/configs/electra_vs_mlm_smoke.yaml"


def electra_vs_mlm_paths(mlm_data, tmp_path):
    """The study's data keys on the mlm_data fixture: its raw text and TSVs (en/, cls/) beside their data-bins."""
    en_bin, cls_bin = mlm_data
    return [f"raw={en_bin.parent}", f"en={en_bin}", f"cls={cls_bin}", f"out={tmp_path / 'study'}",
            f"csv={tmp_path / 'runs.csv'}", f"curves={tmp_path / 'curves.csv'}"]


def test_electra_vs_mlm_study_smoke(mlm_data, study, tmp_path):
    args = ["--config", ELECTRA_VS_MLM_SMOKE, *electra_vs_mlm_paths(mlm_data, tmp_path)]
    printed = study.run(electra_vs_mlm, args)
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
    before = file_times(out)
    study.run(electra_vs_mlm, args)  # every stage reused: nothing prepares, pretrains or fine-tunes again
    assert (tmp_path / "runs.csv").exists() and file_times(out) == before


def test_electra_vs_mlm_study_bad_input(mlm_data, study, tmp_path):
    """Each bad value stops the study with one line before any work: on the command line once, then in-process."""
    paths = electra_vs_mlm_paths(mlm_data, tmp_path)
    bad = [(["pretrain.calibration_updates=10"], ["pretrain.calibration_updates must be >= 2 x pretrain.log_interval = 50",
                                                  "got 10"]),
           (["layers=5"], ["mlm.arch=roberta_l5_h256 is not a registered architecture"]),
           (["raw=/nope"], ["raw=/nope must hold en/"]),
           (["pretrain.minutes=0"], ["pretrain.minutes > 0"]),
           (["curves=/nope/c.csv"], ["curves=/nope/c.csv must be a .csv file in an existing directory"])]
    study.command_line_error(electra_vs_mlm, paths + bad[0][0], *bad[0][1])
    for args, fragments in bad[1:]:
        study.error(electra_vs_mlm, paths + args, *fragments)
    assert not (tmp_path / "study").exists()
