"""The structured compression study: its smoke configuration end to end on tiny data, the CSV's rows and
columns, a rerun that trains nothing; its bad input."""
import csv

import pytest

from conftest import ROOT, file_times
from fairseq_compress.studies import structured

STRUCTURED_SMOKE = ROOT / "fairseq_compress/studies/configs/structured_mt_smoke.yaml"


def test_structured_study_smoke(word_mt, study, tmp_path):
    """Task mt end to end (task cls's smoke, about 80 s with its race of 20 fairseq-validate in a row, does not fit
    the suite's minute: test_study_helpers.py::test_structured_stages_train_with_their_own_recipes checks its stages)."""
    data, _ = word_mt
    results = tmp_path / "results"
    args = ["--config", STRUCTURED_SMOKE, f"data={data}", f"out={tmp_path / 'study'}", f"results={results}"]
    printed = study.run(structured, args)
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
    assert "--task translation_pruning --prune-granularity head\\,neuron --prune-sparsity 0.5" in masked  # printf %q
    assert "--lr 0.0005" in masked and "--restore-file" in masked

    for result in results.iterdir():
        result.unlink()
    before = file_times(out)
    study.run(structured, args)  # every stage reused: nothing trains, scores or races again
    assert (results / "structured_speed.csv").exists() and file_times(out) == before


def test_structured_study_bad_input(study, tmp_path):
    """Each bad value stops the study with one line before any work: on the command line once, then in-process
    (each command starts by importing fairseq)."""

    where = [f"out={tmp_path / 'study'}", f"results={tmp_path / 'results'}"]
    study.command_line_error(structured, [*where, "task=lm"], "task must be mt or cls, got 'lm'")
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
           (["models.updates=null"], ["models.updates must be a positive integer, got None"]),  # cls only: the recipe's
           (["--config", tmp_path / "none.yaml"], ["--config", "no such file"])]
    for args, fragments in bad:
        with pytest.raises(SystemExit) as stopped:
            structured.main([*where, *args])
        line = str(stopped.value.code)
        assert line.startswith("error: ") and "\n" not in line and all(f in line for f in fragments), line
    assert not (tmp_path / "study").exists()
