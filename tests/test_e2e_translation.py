"""End to end on a slice of the shipped EN-FR corpus: train with the plugin,
generate, validate, score detokenized sacreBLEU, measure the checkpoint."""
import json
import re
import shutil
import sys

import torch

import fairseq_compress  # noqa: F401  (safe loading of fairseq checkpoints)

from conftest import ROOT, USER_DIR, one_line_error, run


def test_eval_bleu_scores_detokenized_hypotheses(mt_data, mt_checkpoint, tmp_path):
    checkpoint = tmp_path / "model.pt"  # eval_bleu.sh writes its hypotheses beside the checkpoint, not in a fixture
    shutil.copy(mt_checkpoint, checkpoint)
    result = run(["bash", ROOT / "scripts/eval_bleu.sh", checkpoint, mt_data, "--beam", "2", "--json"])
    score = json.loads(result.stdout)
    assert score["sentences"] == 200
    assert "case:mixed" in score["signature"] and "tok:13a" in score["signature"]
    assert 0.0 <= score["bleu"] <= 100.0
    assert score["sentences_per_s"] > 0  # fairseq-generate's own timer, from the translation log
    hypotheses = checkpoint.with_suffix(".test.hyp").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == 200
    assert not any("\u2581" in h for h in hypotheses), "sentencepiece was not decoded"


def test_score_bleu_is_sacrebleu_on_raw_text(mt_data, tmp_path):
    """The reference against itself scores 100; a damaged copy scores less."""
    reference = mt_data / "raw/test.fr"
    perfect = run(["python", ROOT / "fairseq_compress/pipelines/score_bleu.py", "--ref", reference, "--hyp", reference, "--json"])
    assert json.loads(perfect.stdout)["bleu"] == 100.0
    damaged = tmp_path / "hyp"
    damaged.write_text("".join(line.lower() + "\n" for line in reference.read_text().splitlines()))
    lowered = json.loads(run(["python", ROOT / "fairseq_compress/pipelines/score_bleu.py", "--ref", reference, "--hyp", damaged, "--json"]).stdout)
    assert lowered["bleu"] < 100.0  # case-sensitive


def test_validate_and_checkpoint_contents(mt_data, mt_checkpoint):
    validated = run(["fairseq-validate", mt_data, "--user-dir", USER_DIR, "--path", mt_checkpoint,
                     "--task", "translation", "--valid-subset", "valid", "--max-tokens", "2048"])
    assert "valid on 'valid' subset" in validated.stderr + validated.stdout
    state = torch.load(mt_checkpoint, weights_only=True)
    assert state["cfg"]["model"].arch == "transformer_l2_h128"
    assert state["optimizer_history"][-1]["num_updates"] == 40


def test_size_by_component(mt_checkpoint):
    report = json.loads(run(["fairseq-compress", "size", "--path", mt_checkpoint, "--json"]).stdout)
    model = torch.load(mt_checkpoint, weights_only=True)["model"]
    # Source, target and output embeddings are one shared tensor: counted once.
    embedding = model["encoder.embed_tokens.weight"]
    assert report["components"]["embeddings"]["params"] == embedding.numel()
    attention = sum(t.numel() for k, t in model.items() if ".self_attn." in k or ".encoder_attn." in k)
    ffn = sum(t.numel() for k, t in model.items() if ".fc1." in k or ".fc2." in k)
    assert report["components"]["attention"]["params"] == attention
    assert report["components"]["ffn"]["params"] == ffn
    assert report["model_bytes"] == 4 * report["model_params"]
    version_buffers = sum(1 for k in model if k.endswith(".version"))  # not parameters
    assert report["optimizer_bytes"] == 2 * 4 * (report["model_params"] - version_buffers)  # Adam's moments
    assert report["file_bytes"] == mt_checkpoint.stat().st_size
    text = run(["fairseq-compress", "size", "--path", mt_checkpoint]).stdout
    for label in ("embeddings", "attention", "ffn", "other", "file on disk"):
        assert label in text


def test_size_errors_name_the_file(tmp_path):
    missing = run(["fairseq-compress", "size", "--path", tmp_path / "none.pt"], check=False)
    assert missing.returncode != 0 and "--path" in missing.stderr and "none.pt" in missing.stderr
    not_fairseq = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, not_fairseq)
    result = run(["fairseq-compress", "size", "--path", not_fairseq], check=False)
    one_line_error(result, "not a fairseq checkpoint")


def test_hydra_train_with_user_dir(mt_data, tmp_path):
    save_dir = tmp_path / "hydra"
    run(["fairseq-hydra-train", "--config-dir", ROOT / "fairseq_compress/config", "--config-name", "mt_en_fr",
         f"task.data={mt_data}", f"common.user_dir={USER_DIR}", "model._name=transformer_l2_h128",
         f"checkpoint.save_dir={save_dir}", "optimization.max_update=5", f"hydra.run.dir={tmp_path / 'outputs'}"],
        cwd=tmp_path)
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == 5
    assert state["cfg"]["model"]["_name"] == "transformer_l2_h128"


def test_hydra_train_with_drophead_overrides(mt_data, tmp_path):
    save_dir = tmp_path / "hydra"
    result = run(["fairseq-hydra-train", "--config-dir", ROOT / "fairseq_compress/config", "--config-name", "mt_en_fr",
                  f"task.data={mt_data}", f"common.user_dir={USER_DIR}", "model._name=transformer_l2_h128",
                  "+model.drophead_p=0.2", "+model.drophead_schedule=v", "lr_scheduler.warmup_updates=2",
                  "common.log_interval=1", f"checkpoint.save_dir={save_dir}", "optimization.max_update=6",
                  f"hydra.run.dir={tmp_path / 'outputs'}"], cwd=tmp_path)
    output = result.stdout + result.stderr
    rates = [float(m) for m in re.findall(r'"drophead_p": "([0-9.]+)"', output)]  # the recipe's JSON train_inner records
    # V schedule, W = 2, T = 6: p(t) for t = 0..5, the update counts before updates 1..6.
    assert rates[:6] == [0.2, 0.1, 0.0, 0.05, 0.1, 0.15], output[-3000:]
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert state["cfg"]["model"]["drophead_p"] == 0.2


def test_int8_benchmark_reads_speed_and_bleu_from_eval_bleu(mt_data, mt_checkpoint, tmp_path):
    """The benchmarks' shared race (fairseq_compress.studies.translation_race) on a real checkpoint."""
    checkpoint = tmp_path / "model.pt"  # eval_bleu.sh writes its hypotheses beside the checkpoint
    shutil.copy(mt_checkpoint, checkpoint)
    out = run([sys.executable, "-m", "fairseq_compress.benchmarks.int8_inference", "--ckpt", checkpoint, "--data", mt_data,
               "--repeats", "1"]).stdout
    speeds = re.findall(r"^(fp32|int8): ([0-9.]+) sentences/s", out, re.MULTILINE)
    assert [name for name, _ in speeds] == ["fp32", "int8"] and all(float(s) > 0 for _, s in speeds), out
    assert "int8 speed-up:" in out
