"""The size sweeps and the compression study: each smoke configuration (fairseq_compress/studies/configs/*_smoke.yaml)
end to end on tiny data, the CSV's rows and columns, a rerun that trains nothing; their bad input."""
import csv
import json

import pytest
import torch

from conftest import ROOT, file_times, run
from fairseq_compress.checkpoint_safety import load_state
from fairseq_compress.studies import compression_sweep, size_sweep


CONFIGS = ROOT / "fairseq_compress/studies/configs"


@pytest.mark.parametrize("task", ["mt", "mlm"])
def test_size_sweep_smoke(task, request, study, tmp_path):
    """Each arch trained for the budget with the effective batch split in two, its curve timed; plots,
    curves and the summary beside the CSV; a rerun trains nothing."""
    data = request.getfixturevalue("word_mt")[0] if task == "mt" else request.getfixturevalue("mlm_data")[0]
    y, micro = ("bleu", 1024) if task == "mt" else ("ppl", 512)
    results, out = tmp_path / "results", tmp_path / "sweep"  # the study makes the CSV's folder
    args = ["--config", CONFIGS / f"size_sweep_{task}_smoke.yaml", f"data={data}", f"out={out}",
            f"csv={results / 'summary.csv'}"]
    printed = study.run(size_sweep, args)
    assert f"batches of {micro} x 2 tokens" in study.stderr
    with open(results / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["run", "params", "train_seconds", "updates", "tokens_per_second", f"final_{y}",
                             f"best_{y}", "overtakes"]
    archs = [row["run"] for row in rows]  # by size: the smoke configs list the larger arch first
    assert archs == {"mt": ["transformer_e3d1_h128", "transformer_l2_h128"],
                     "mlm": ["roberta_l2_h128", "roberta_l3_h128"]}[task]
    assert int(rows[0]["params"]) < int(rows[1]["params"]) and f"| {archs[1]} |" in printed
    for arch in archs:
        points = [json.loads(line) for line in (out / arch / "curve.jsonl").read_text().splitlines()]
        seconds = [p["train_seconds"] for p in points]
        assert seconds == sorted(seconds) and seconds[-1] >= 6, seconds  # 0.1 min of training: tests/test_timed.py
        assert all(y in p for p in points)
        state = torch.load(out / arch / "checkpoint_last.pt", weights_only=True)
        assert state["optimizer_history"][-1]["num_updates"] == points[-1]["updates"]
        assert state["cfg"]["optimization"]["update_freq"] == [2]
        assert (results / f"{arch}.curve.jsonl").read_text() == (out / arch / "curve.jsonl").read_text()
    for png in (f"{y}_vs_wall.png", f"{y}_vs_updates.png"):
        assert (results / png).stat().st_size > 10_000
    if task == "mt":  # what the compression study reads (trained_as) from a sweep's checkpoint
        info = run(["fairseq-compress", "info", "--path", out / archs[0] / "checkpoint_best.pt"]).stdout.split()
        assert info[:2] == ["translation", archs[0]]
        info = json.loads(run(["fairseq-compress", "info", "--json", "--path",
                               out / archs[0] / "checkpoint_best.pt"]).stdout)
        assert info == {"task": "translation", "arch": archs[0], "data": str(data)}

    trained = file_times(out)
    (results / "summary.csv").unlink()
    study.run(size_sweep, args)  # every run reused: no log line, checkpoint or curve written again
    assert (results / "summary.csv").exists() and file_times(out) == trained


def test_size_sweep_bad_input(word_mt, mlm_data, study, tmp_path):
    """Each bad value stops the study with one line before any work: on the command line once, then in-process."""
    data = word_mt[0]
    where = [f"out={tmp_path / 'out'}", f"csv={tmp_path / 'x.csv'}"]
    no_budget = tmp_path / "no_budget.yaml"  # a config that forgets a value the schema leaves MISSING
    no_budget.write_text("".join(line for line in (CONFIGS / "size_sweep_mt.yaml").open()
                                 if not line.startswith("budget_minutes:")))
    study.command_line_error(size_sweep, ["--config", no_budget, f"data={data}", *where],
                             "no_budget.yaml", "budget_minutes", "Missing mandatory value")
    no_base = tmp_path / "no_base.yaml"  # a smoke config laid over a file that is not beside it
    no_base.write_text((CONFIGS / "size_sweep_mt_smoke.yaml").read_text())
    study.error(size_sweep, ["--config", no_base, f"data={data}", *where],
                "no_base.yaml: extends: no such file beside it: size_sweep_mt.yaml")
    mt = ["--config", CONFIGS / "size_sweep_mt_smoke.yaml", *where]
    bad = [([f"data={data}", "archs=[transformer_l5_h128]"],
            ["archs: transformer_l5_h128 is not a registered architecture"]),
           ([f"data={data}", "archs=[roberta_l3_h128]"], ["archs: roberta_l3_h128 is not a translation architecture"]),
           ([f"data={data}", "task=lm"], ["task must be mt or mlm, got 'lm'"]),
           (["data=/nope"], ["data=/nope", "prepare_mt.sh"]),
           ([f"data={data}", "task=mlm"], ["task=mlm", "size_sweep_mt_smoke.yaml is the mt study's config"]),
           ([f"data={data}", "batch_tokens=0"], ["batch_tokens must be > 0, got 0"]),
           ([f"data={data}", "validate_seconds=-1"], ["validate_seconds must be >= 0"]),
           ([f"data={data}", "batch_tokens=many"], ["batch_tokens"]),
           ([f"data={data}", f"csv={tmp_path / 'x.txt'}"], ["csv=", "must be a .csv file"])]
    for args, fragments in bad:
        study.error(size_sweep, mt + args, *fragments)
    # task=mlm picks the masked-LM config, which checks its data
    study.error(size_sweep, [f"data={data}", "task=mlm", *where], f"data={data}", "prepare_mlm.sh")
    mlm = ["--config", CONFIGS / "size_sweep_mlm_smoke.yaml", f"data={mlm_data[0]}", *where, "archs=[transformer_l2_h128]"]
    study.error(size_sweep, mlm, "archs: transformer_l2_h128 is not a masked-LM architecture")
    assert not (tmp_path / "out").exists()


def test_compression_sweep_smoke(word_mt, study, tmp_path):
    """The original, int4, one-shot and gradual 50 %: each evaluated, sized and in the CSV; a rerun reuses all."""
    save_dir = word_mt[1].parent
    args = ["--config", CONFIGS / "compression_sweep_smoke.yaml", f"models=[{save_dir}]", f"out={tmp_path / 'out'}",
            f"csv={tmp_path / 'sweep.csv'}"]
    study.run(compression_sweep, args)
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "params", "method", "sparsity", "bits", "mb", "metric", "value"]
    assert sorted((r["method"], r["sparsity"], r["bits"]) for r in rows) == \
        [("gradual", "0.5", "16"), ("oneshot", "0.5", "16"), ("original", "0", "32"), ("quantize", "0", "4")]
    rows = {row["method"]: row for row in rows}
    assert all(row["metric"] == "bleu" and row["model"] == save_dir.name and 0 <= float(row["value"]) <= 100
               for row in rows.values())
    mb = {method: float(row["mb"]) for method, row in rows.items()}
    assert mb["quantize"] < mb["oneshot"] < mb["original"] and mb["gradual"] < mb["original"]
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    work = tmp_path / "out" / save_dir.name
    gradual = load_state(work / "gradual_s0.5.pt")["model"]
    assert gradual["encoder.layers.0.fc1.weight"]["format"] == "sparse"
    assert "translation_pruning" in (work / "gradual_s0.5" / "train.log").read_text()  # the pruning task fine-tuned

    made = file_times(tmp_path / "out")
    (tmp_path / "sweep.csv").unlink()
    study.run(compression_sweep, args)  # every stage reused: nothing compressed, trained or evaluated again
    assert (tmp_path / "sweep.csv").exists() and len([*work.glob("*.pt"), *work.glob("*.json")]) == 12
    assert file_times(tmp_path / "out") == made


def test_compression_sweep_bad_input(word_mt, study, tmp_path):
    """Each bad value stops the study with one line before any work: on the command line once, then in-process."""
    save_dir = word_mt[1].parent
    twin = tmp_path / "elsewhere" / save_dir.name
    twin.mkdir(parents=True)
    (twin / "checkpoint_best.pt").symlink_to(save_dir / "checkpoint_best.pt")
    where = ["--config", CONFIGS / "compression_sweep_smoke.yaml", f"out={tmp_path / 'out'}", f"csv={tmp_path / 'x.csv'}"]
    model = f"models=[{save_dir}]"
    study.command_line_error(compression_sweep, [*where, f"models=[{tmp_path}]"], "models:", "holds no checkpoint_best.pt")
    for args, fragments in [
        ([model, "sparsities=[1.5]"], ["sparsities", "(0, 1)", "1.5"]),
        ([model, "methods=[distill]"], ["methods: distill is not one of quantize, oneshot, gradual"]),
        ([model, "bits=[9]"], ["bits: 9 is not one of 2, 3, 4"]),
        ([model, "gradual.updates=0"], ["gradual.updates must be a positive integer, got 0"]),
        ([model, "gradual.updates=many"], ["gradual.updates"]),
        ([model, f"data={tmp_path / 'nowhere'}"], ["set data=DIR", "is not a directory"]),
        ([model, f"csv={tmp_path / 'x.txt'}"], ["csv=", "must be a .csv file"]),
        ([f"models=[{save_dir},{twin}]"], ["two save dirs of the same name"]),
    ]:
        study.error(compression_sweep, where + args, *fragments)
    assert not (tmp_path / "out").exists()


def test_compression_sweep_compares_models_at_equal_memory(tmp_path, capsys):
    """Hand-made results: the big model pruned into the small one's MB beats it; the
    medium one has nothing that fits; a classification model gets its own panel."""
    from fairseq_compress.studies.compression_sweep import write_results

    def result(model, params, method, mb, value, metric="bleu", sparsity=0.0, bits=32):
        path = tmp_path / "out" / model / f"{method}_{mb}.result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"model": model, "params": params, "method": method, "sparsity": sparsity,
                                    "bits": bits, "mb": mb, "metric": metric, "value": value}))

    result("small", 1e6, "original", 4.0, 10.0)
    result("medium", 2e6, "original", 8.0, 12.0)
    result("medium", 2e6, "quantize", 4.5, 11.9, bits=8)
    result("big", 4e6, "original", 16.0, 15.0)
    result("big", 4e6, "gradual", 3.5, 12.5, sparsity=0.7, bits=16)
    result("big", 4e6, "quantize", 2.0, 9.0, bits=4)
    result("cls", 3e6, "original", 12.0, 70.0, metric="accuracy")
    write_results(tmp_path / "out", tmp_path / "s.csv")
    out = capsys.readouterr().out

    pairs = {(p["smaller"], p["larger"]): p for p in csv.DictReader(open(tmp_path / "s_equal_memory.csv"))}
    assert set(pairs) == {("small", "medium"), ("small", "big"), ("medium", "big")}
    assert pairs["small", "big"]["larger_compressed"] == "gradual 70% fp16"
    assert pairs["small", "big"]["larger_wins"] == "True" and pairs["medium", "big"]["larger_wins"] == "True"
    assert pairs["small", "medium"]["larger_compressed"] == "none fits"
    assert pairs["small", "medium"]["larger_wins"] == "False"
    assert "small fp32 (4.0 MB): bleu 10.0 | big gradual 70% fp16 (3.5 MB): 12.5 -> larger wins" in out
    assert len(list(csv.DictReader(open(tmp_path / "s.csv")))) == 7
    assert (tmp_path / "s.png").stat().st_size > 10_000
