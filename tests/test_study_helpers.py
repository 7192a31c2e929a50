"""The study helpers read fairseq-train's --log-format json logs as fairseq writes them; the structured
study's stages (fairseq_compress/studies/structured.py) train with their own recipes."""
import csv
import json
import os
import sys

import pytest

from conftest import BIN, ROOT, log_records, one_line_error, run
from fairseq_compress.studies import train_stats
from fairseq_compress.studies.drophead import run_summary, valid_curves, valid_once, valid_points

# Lines as fairseq 0.12 writes them with --log-format json (from a real train_mt.sh log).
INNER = ('2026-12-02 04:11:{s:02d} | INFO | train_inner | {{"epoch": 1, "update": 0.004, "loss": "13.977", '
         '"nll_loss": "13.989", "ppl": "{ppl}", "wps": "1061.4", "ups": "0.29", "wpb": "3804", "bsz": "204", '
         '"num_updates": "{u}", "lr": "1e-05", "gnorm": "1.376", "clip": "100", "train_wall": "{tw}", "wall": "{w}"}}')
VALID = ('2026-12-02 04:11:32 | INFO | valid | {{"epoch": 1, "valid_loss": "{loss}", "valid_nll_loss": "14.008", '
         '"valid_ppl": "16479.9", "valid_wps": "1357.3", "valid_wpb": "1759.3", "valid_bsz": "221.3", '
         '"valid_num_updates": "{u}", "valid_best_loss": "3.9"}}')
EPOCH = ('2026-12-02 04:11:40 | INFO | train | {"epoch": 1, "train_loss": "13.958", "train_ppl": "16033.8", '
         '"train_wps": "727.3", "train_num_updates": "4", "train_lr": "2e-05", "train_train_wall": "16", "train_wall": "26"}')


def test_log_records_drop_the_tag_prefix_once_and_keep_each_tag_apart():
    log = "\n".join([INNER.format(s=1, u=2, ppl=100, tw=11, w=13), VALID.format(loss=4.5, u=2), EPOCH,
                     "2026-12-02 04:11:41 | INFO | fairseq_cli.train | done training in 25.7 seconds"])
    (epoch,) = log_records(log, "train")
    # end of epoch: fairseq's train_wall and wall come prefixed as train_train_wall and train_wall
    assert epoch == {"epoch": 1, "loss": 13.958, "ppl": 16033.8, "wps": 727.3, "num_updates": 4, "lr": 2e-05,
                     "train_wall": 16, "wall": 26}
    assert [r["num_updates"] for r in log_records(log, "train_inner")] == [2]
    assert log_records(log, "valid")[0]["loss"] == 4.5 and log_records(log, "test") == []
    assert train_stats.last_train_stats(log)["num_updates"] == 4


def write_log(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_seconds_per_update_is_training_time_after_the_first_interval(tmp_path):
    # the first interval holds the start-up (train_wall 26); then 25 updates per 20 s of training
    log = "\n".join(INNER.format(s=i, u=25 * (i + 1), ppl=100, tw=26 if i == 0 else 20, w=60 * (i + 1)) for i in range(4))
    assert train_stats.seconds_per_update(log) == 60 / 75
    assert [p["num_updates"] for p in train_stats.inner_points(log)] == [25, 50, 75, 100]
    # fairseq prints train_wall in whole seconds: intervals that all print 0 ran under 1 s together, never in 0 s
    fast = "\n".join(INNER.format(s=i, u=i + 1, ppl=100, tw=0, w=i) for i in range(5))
    assert train_stats.seconds_per_update(fast) == 1 / 4


def test_structured_small_model_time_falls_back_to_the_epochs_of_a_short_run():
    from fairseq_compress.studies.structured import training_seconds_per_update

    inner = "\n".join(INNER.format(s=i, u=25 * (i + 1), ppl=100, tw=26 if i == 0 else 20, w=60 * (i + 1)) for i in range(4))
    assert training_seconds_per_update(inner + "\n" + EPOCH) == 60 / 75  # train_stats' rate when it has one
    # under two logging intervals: the epochs' train_wall (16 s) over the updates (4)
    assert training_seconds_per_update(EPOCH) == 4.0 and training_seconds_per_update("") is None
    # a run under 1 s prints train_wall 0: its time is under 1 s, never 0 (0 minutes would be no budget at all)
    assert training_seconds_per_update(EPOCH.replace('"train_train_wall": "16"', '"train_train_wall": "0"')) == 1 / 4


def test_valid_curves_find_the_minimum_and_the_rise(tmp_path):
    """The DropHead study's valid-loss readers (fairseq_compress/studies/drophead.py): per run valid.json,
    the curves of every run as a CSV and a plot."""
    losses = {100: 5.0, 200: 4.2, 300: 4.4, 400: 4.9}
    write_log(tmp_path / "a/seed1/train.log", [VALID.format(loss=l, u=u) for u, l in losses.items()])
    write_log(tmp_path / "a/seed2/train.log", [VALID.format(loss=l - 0.2, u=u) for u, l in losses.items()])
    summary = valid_once(tmp_path / "a/seed1")
    assert summary == {"best_valid_loss": 4.2, "best_update": 200, "valid_loss_rise": 0.7}
    assert json.loads((tmp_path / "a/seed1/valid.json").read_text()) == summary
    assert valid_once(tmp_path / "a/seed2")["best_valid_loss"] == 4.0 and len(list(tmp_path.glob("a/*/valid.json"))) == 2
    valid_curves({"a": tmp_path / "a"}, [1, 2], tmp_path / "v.csv", tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 10_000
    rows = list(csv.DictReader((tmp_path / "v.csv").open()))
    assert len(rows) == 8 and rows[0] == {"config": "a", "seed": "seed1", "num_updates": "100", "valid_loss": "5.0"}
    assert run_summary(valid_points(tmp_path / "a/seed2/train.log"))["best_valid_loss"] == 4.0
    write_log(tmp_path / "b/seed1/train.log", [EPOCH])  # no validation logged: one line, not a traceback
    with pytest.raises(SystemExit, match=r"b/seed1/train.log has no 'valid' record of --log-format json"):
        valid_points(tmp_path / "b/seed1/train.log")


def test_summarize_runs_merges_metric_files_and_picks_the_best_group(tmp_path):
    for group, bleu, loss in (("x", 10.0, 4.0), ("y", 12.0, 4.5)):
        for seed in (1, 2):
            (tmp_path / group / f"seed{seed}").mkdir(parents=True)
            (tmp_path / group / f"seed{seed}/bleu.json").write_text(json.dumps({"bleu": bleu + seed}))
            (tmp_path / group / f"seed{seed}/valid.json").write_text(json.dumps({"best_valid_loss": loss}))
    groups = [f"x={tmp_path / 'x'}", f"y={tmp_path / 'y'}"]
    summarize = ["python", "-m", "fairseq_compress.studies.summarize_runs", *groups]
    assert run(summarize + ["--metric", "best_valid_loss", "--metric-file", "valid.json", "--best", "min"]).stdout == "x\n"
    assert run(summarize + ["--metric", "bleu", "--best", "max"]).stdout == "y\n"
    table = run(summarize + ["--metric", "bleu", "best_valid_loss", "--metric-file", "bleu.json", "valid.json",
                             "--csv", tmp_path / "runs.csv"]).stdout
    assert "| y | 2 | 13.50 ± 0.71 | 4.50 ± 0.00 |" in table
    assert (tmp_path / "runs.csv").read_text().splitlines()[0] == "config,seed,bleu,best_valid_loss"


def test_pretraining_curves_plot_both_runs(tmp_path):
    electra = write_log(tmp_path / "electra.log", [
        INNER.format(s=i, u=25 * (i + 1), ppl=9, tw=20, w=60).replace(
            '"ppl": "9",', f'"gen_loss": "9.9", "disc_acc": "85.1", "disc_acc_replaced": "{i}.5", '
                                   f'"replaced_frac": "14.9", "gen_ppl": "{900 - 100 * i}",') for i in range(3)])
    mlm = write_log(tmp_path / "mlm.log", [INNER.format(s=i, u=25 * (i + 1), ppl=800 - 50 * i, tw=20, w=60)
                                           for i in range(3)])
    from fairseq_compress.studies.electra_vs_mlm import write_curves

    write_curves(electra, mlm, tmp_path / "c.csv", tmp_path / "c.png")
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert {"run": "electra", "num_updates": "75", "metric": "disc_acc_replaced", "value": "2.5"} in rows
    assert {"run": "mlm", "num_updates": "75", "metric": "ppl", "value": "700.0"} in rows
    assert (tmp_path / "c.png").stat().st_size > 10_000


@pytest.mark.parametrize("task,metric,prefix", [("mt", "bleu", "structured"), ("cls", "accuracy", "structured_cls")])
def test_structured_results_tables_speedups_head_losses_and_the_equal_speed_pick(task, metric, prefix, mt_checkpoint,
                                                                                 tmp_path):
    from fairseq_compress.studies.structured_results import TASKS, Contender, write_results

    out, results = tmp_path / "out", tmp_path / "results"
    speeds = {"dense": (4.0, 20, 30), "dense_int8": (3.9, 30, 40), "dense_ft": (4.2, 20, 30), "heads50": (3.5, 25, 35), "heads50_int8": (3.4, 46, 50),
              "weights50": (3.8, 20, 30), "ipq": (3.0, 19, 29), "small": (2.5, 34, 45), "small_int8": (2.4, 45, 60)}
    (out / metric).mkdir(parents=True)
    for name, (value, one, two) in speeds.items():
        (out / metric / f"{name}.json").write_text(json.dumps({metric: value}))
    (out / "speed.json").write_text(json.dumps({n: {"sent_s_1": one, "sent_s_2": two} for n, (_, one, two) in speeds.items()}))
    for config, lost in (("none", 1.0), ("v_p0.1", 0.5), ("v_p0.2", 0.25)):
        run_dir = out / "models" / config / "seed1"
        run_dir.mkdir(parents=True)
        (run_dir / "heads_keep1.0.json").write_text(json.dumps({metric: 10.0}))
        for keep in (0.75, 0.5, 0.25):
            removed = round(1 - keep, 2)
            (run_dir / f"heads_keep{keep}.json").write_text(json.dumps({metric: 10.0 - lost * removed * 4}))
            (run_dir / f"heads_keep{keep}_ft.json").write_text(json.dumps({metric: 10.0 - lost * removed * 2}))
    contenders = [Contender(name, mt_checkpoint, "int8" if name.endswith("_int8") else "fp32") for name in speeds]
    configs = {"none": "no DropHead", "v_p0.1": "DropHead p=0.1 (V)", "v_p0.2": "DropHead p=0.2 (V)"}
    printed = write_results(out, results, TASKS[task], "transformer_l3_h256", "transformer_l2_h128", contenders, configs,
                            [0.75, 0.5, 0.25])
    rows = {row["contender"]: row for row in csv.DictReader(open(results / f"{prefix}_speed.csv"))}
    assert rows["heads50_int8"]["method"] == "heads" and rows["heads50_int8"]["removed"] == "0.5"
    assert float(rows["heads50_int8"]["speedup_1"]) == 2.3 and float(rows["heads50_int8"]["speedup_2"]) == round(50 / 30, 2)
    assert float(rows["heads50"][metric]) == 3.5 and rows["dense_ft"]["method"] == "dense, fine-tuned as long"
    assert float(rows["heads50"][f"{metric}_lost"]) == 0.7  # against dense_ft (4.2), not dense (4.0)
    heads = list(csv.DictReader(open(results / f"{prefix}_heads.csv")))
    lost = {(r["config"], r["heads_removed"], r["finetuned"]): float(r[f"{metric}_lost"]) for r in heads}
    assert lost[("none", "0.5", "False")] == 2.0 and lost[("v_p0.2", "0.5", "True")] == 0.25
    equal = {r["precision"]: r for r in csv.DictReader(open(results / f"{prefix}_equal_speed.csv"))}
    # fp32: the small model makes 34 sentences/s; no fp32 version of the large one is as fast (heads50_int8 is,
    # but in int8); int8: the small one makes 45, heads50_int8 46
    assert equal["fp32"]["large_compressed"] == "none as fast"
    assert equal["int8"]["large_compressed"] == "heads50_int8" and float(equal["int8"][f"{metric}_gain"]) == 1.0
    assert (results / f"{prefix}_speed.png").stat().st_size and (results / f"{prefix}_heads.png").stat().st_size
    assert "| DropHead p=0.1 (V) | 10.00 |" in printed


def test_structured_race_refuses_a_malformed_or_missing_contender(mt_checkpoint, tmp_path):
    race = [sys.executable, "-m", "fairseq_compress.benchmarks.structured_race", "--data", tmp_path, "--out", tmp_path / "s.json"]
    for contender, fragment in ((f"dense={mt_checkpoint}:fp16", "NAME=CHECKPOINT:fp32 or NAME=CHECKPOINT:int8"),
                                (f"dense={tmp_path / 'none.pt'}:fp32", "contender dense: no checkpoint")):
        result = run(race + [contender], check=False)
        assert result.returncode != 0 and fragment in result.stderr, result.stderr
    for flags in (["--speed-sentences", "100"], ["--task", "cls", "--speed-sentences", "0"]):
        result = run(race + flags + [f"dense={mt_checkpoint}:fp32"], check=False)
        assert result.returncode != 0 and "--speed-sentences must be >= 1 and is for --task cls" in result.stderr
    assert not (tmp_path / "s.json").exists()


def test_quant_noise_plot_groups_seeds_by_config_and_refuses_an_empty_csv(tmp_path):
    from fairseq_compress.studies.quant_noise import plot, read_by_config

    header = "config,seed,bleu_fp32,bleu_ipq,ipq_drop,bleu_ipq_distill,ipq_distill_drop,bleu_int8,mb_fp32,mb_ipq,mb_int8"
    (tmp_path / "qn.csv").write_text("\n".join([header, "none,1,20,15,5,16,4,19.9,30,1.5,7.8",
                                                "none,2,21,16,5,17,4,20.9,30,1.5,7.8",
                                                "pq0.1,1,18,16,2,16.5,1.5,17.9,30,1.5,7.8"]) + "\n")
    by_config = read_by_config(tmp_path / "qn.csv")
    assert list(by_config) == ["none", "pq0.1"]
    assert [row["bleu_ipq_distill"] for row in by_config["none"]] == [16.0, 17.0]
    plot(by_config, tmp_path / "qn.png")
    assert (tmp_path / "qn.png").stat().st_size > 10_000
    (tmp_path / "empty.csv").write_text(header + "\n")
    with pytest.raises(SystemExit) as failed:  # the study's one-line error, before it plots
        read_by_config(tmp_path / "empty.csv")
    assert str(failed.value).startswith("error: ") and "empty.csv has no rows" in str(failed.value)
    assert "\n" not in str(failed.value) and not (tmp_path / "e.png").exists()


def flag_values(args, flag):
    """The value fairseq-train takes for `flag` (argparse: the last one given wins)."""
    return args[len(args) - 1 - args[::-1].index(flag) + 1]


INNER_WALL = ('2026-12-02 04:11:{s:02d} | INFO | train_inner | {{"epoch": 1, "num_updates": "{u}", "train_wall": "{tw}"}}')


@pytest.mark.parametrize("task", ["mt", "cls"])
def test_structured_stages_train_with_their_own_recipes(task, tmp_path, monkeypatch):
    """What fairseq-train receives from each training stage of the structured study (its full config): mt, the
    from-scratch runs (arch, the small arch) lr 0.002 with 100 warmup updates and 1024-token batches, the
    fine-tunes (masked and dense) lr 0.0005 with 1; cls, every run the RoBERTa GLUE recipe (lr 3e-4, batch 32,
    6 % warmup) from its masked LM, the fine-tunes validated and saved at their end only. fairseq-train (which
    saves an empty checkpoint_best.pt), fairseq-validate and fairseq-compress are stubs."""
    from fairseq_compress.studies import structured
    from fairseq_compress.studies.study_config import load_config

    stubs = tmp_path / "venv/bin"
    stubs.mkdir(parents=True)
    received = tmp_path / "fairseq-train.args"
    (stubs / "fairseq-train").write_text(  # --help: require_arch's check
        f'#!/usr/bin/env bash\n[[ " $* " == *" --help "* ]] && exit 0\nprintf "%s\\n" "$*" >> {received}\n'
        'while (($#)); do [[ $1 == --save-dir ]] && touch "$2/checkpoint_best.pt"; shift; done; exit 0\n')
    (stubs / "fairseq-validate").write_text("#!/usr/bin/env bash\n")
    (stubs / "python").write_text(f'#!/usr/bin/env bash\nexec {sys.executable} "$@"\n')  # the recipes are real
    (stubs / "fairseq-compress").write_text(  # eval_cls.sh's validation-summary
        '#!/usr/bin/env bash\necho \'{"accuracy": 50.0, "dev_accuracy": 50.0}\'\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    monkeypatch.setenv("VENV", str(tmp_path / "venv"))  # scripts/lib/common.sh: its PATH and PY
    monkeypatch.setenv("PATH", f"{stubs}:{BIN}:{os.environ['PATH']}")
    data, out, base = tmp_path / "data", tmp_path / "out", tmp_path / "base.pt"
    (data / "input0").mkdir(parents=True)
    (data / "label").mkdir()
    for name in ("train.en-fr.en.bin", "input0/train.bin", "input0/valid.bin", "label/dict.txt"):
        (data / name).write_text("x\n")
    base.touch()
    args = [f"data={data}", f"out={out}", "results=/unused", "raw=null", f"pretrain.large={base}", f"pretrain.small={base}"]
    config = load_config(structured.StudyConfig, f"structured_{task}", "", args[:3] if task == "mt" else args, "")
    steps = (structured.Translation if task == "mt" else structured.Classification)(config, data, out)
    configs = structured.drophead_configs(config.models)
    first = out / "models/none/seed1"
    steps.train_model(first, 1, configs["none"])
    steps.train_model(out / "models/v_p0.1/seed2", 2, configs["v_p0.1"])
    # fairseq's train_wall: 25 updates in 20 s after the first interval (the start-up): 0.8 s an update
    (first / "train.log").write_text("\n".join(INNER_WALL.format(s=i, u=25 * (i + 1), tw=26 if i == 0 else 20)
                                               for i in range(2)) + "\n")
    steps.train_small(first)
    mask = structured.Mask("heads50", "head", 0.5)
    steps.finetune(out / "finetuned/heads50", first / "checkpoint_best.pt", 150, structured.mask_args(mask, 150))
    steps.finetune(out / "finetuned/dense", first / "checkpoint_best.pt", 150)
    commands = [line.split() for line in received.read_text().splitlines()]
    assert "--drophead-p 0.1 --drophead-schedule v" in " ".join(commands[1]) and "--drophead-p" not in commands[0]
    assert flag_values(commands[1], "--seed") == "2" and flag_values(commands[0], "--seed") == "1"
    assert flag_values(commands[2], "--arch") == config.models.small_arch
    masked = " ".join(commands[3])
    assert "--prune-granularity head --prune-sparsity 0.5 --prune-schedule gradual --prune-end-update 75 " \
           "--prune-frequency 15 --prune-scope layer" in masked
    assert all(flag_values(c, "--max-update") == "150" for c in commands[3:])
    if task == "mt":
        assert [(flag_values(c, "--lr"), flag_values(c, "--warmup-updates"), flag_values(c, "--max-tokens"))
                for c in commands] == [("0.002", "100", "1024")] * 3 + [("0.0005", "1", "1024")] * 2
        # the small model trains as many minutes as the first model's 700 updates took: 0.8 s x 700 / 60
        assert "translation_timed" in commands[2] and flag_values(commands[2], "--stop-time-minutes") == "9.33"
        assert flag_values(commands[3], "--task") == "translation_pruning"  # the last --task wins: over the recipe's
        assert flag_values(commands[4], "--task") == "translation"
        assert all(flag_values(c, "--restore-file") == str(first / "checkpoint_best.pt") for c in commands[3:])
    else:
        assert [(flag_values(c, "--lr"), flag_values(c, "--batch-size"), flag_values(c, "--warmup-updates"))
                for c in commands] == [("0.0003", "32", "74")] * 3 + [("0.0003", "32", "9")] * 2
        assert all(flag_values(c, "--restore-file") == str(base) for c in commands[:3])  # the masked LMs
        assert flag_values(commands[3], "--task") == "sentence_prediction_pruning"
        assert flag_values(commands[4], "--task") == "sentence_prediction"
        assert all(flag_values(c, "--validate-interval-updates") == "150" == flag_values(c, "--save-interval-updates")
                   for c in commands[3:])
        assert flag_values(commands[0], "--validate-interval-updates") == "312"  # finetune_cls.sh's quarterly passes


def test_plots_are_headless_and_quiet_under_fairseqs_debug_logging():
    """fairseq's import leaves the root logger at DEBUG; matplotlib's own import then logged its set-up into
    every study's output."""
    code = ("import logging; logging.basicConfig(level=logging.DEBUG); from fairseq_compress.plotting import pyplot; "
            "plt = pyplot(); import matplotlib; print(matplotlib.get_backend())")
    result = run([sys.executable, "-c", code])
    assert result.stdout.strip().lower() == "agg" and "matplotlib" not in result.stderr, result.stderr
