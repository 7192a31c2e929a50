"""Size sweeps against training time: fairseq-compress plot / summarize, the hydra configs of one run and their
agreement with the size-sweep study's configs (the study itself: tests/test_studies.py)."""
import csv
import json

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, USER_DIR, run
from fairseq_compress.sweep_curves import crossover_seconds

CONFIG_DIR = ROOT / "fairseq_compress" / "config"


def curve(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plot_draws_one_line_per_run(tmp_path):
    for name, params in (("small", 1_000_000), ("large", 4_000_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "curve.jsonl").write_text("".join(
            json.dumps({"train_seconds": t, "updates": 10 * t, "tokens": 1000 * t, "params": params,
                        "flops": 6 * params * 1000 * t, "loss": 10 / t, "ppl": 2 ** (10 / t)}) + "\n"
            for t in (1, 2, 3)))
    result = run(["fairseq-compress", "plot", tmp_path, "--x", "flops", "--y", "ppl", "--out", tmp_path / "ppl.png"])
    assert result.stdout.strip().endswith("2 lines: small (1.0M params); large (4.0M params)")
    assert (tmp_path / "ppl.png").stat().st_size > 10_000
    no_bleu = run(["fairseq-compress", "plot", tmp_path, "--y", "bleu", "--out", tmp_path / "b.png"], check=False)
    assert no_bleu.returncode != 0 and "--y bleu: not in the curves of large, small" in no_bleu.stderr
    empty = run(["fairseq-compress", "plot", tmp_path / "small", "--out", tmp_path / "e.png"], check=False)
    assert empty.returncode != 0 and "holds no <run>/curve.jsonl" in empty.stderr


@pytest.mark.parametrize("name, task, arch, minutes", [("sweep_mt", "translation_timed", "transformer_l6_h512", 12),
                                                       ("sweep_mlm", "masked_lm_timed", "roberta_l6_h512", 20)])
def test_hydra_sweep_configs_compose(name, task, arch, minutes, tmp_path):
    result = run(["fairseq-hydra-train", "--config-dir", CONFIG_DIR, "--config-name", name, "task.data=/data",
                  f"common.user_dir={USER_DIR}", f"model._name={arch}", "checkpoint.save_dir=/ckpt", "--cfg", "job"],
                 cwd=tmp_path)
    job = result.stdout
    assert f"_name: {task}" in job and f"_name: {arch}" in job and f"stop_time_minutes: {minutes}" in job


@pytest.mark.parametrize("task", ["mt", "mlm"])
def test_hydra_sweep_configs_hold_the_study_values(task):
    """config/sweep_{mt,mlm}.yaml is one run of the size-sweep study's config: the same budget, effective
    batch, validation, lr, warmup and seed (one of its archs by default)."""
    from fairseq_compress import recipes
    from fairseq_compress.studies.size_sweep import TASKS, batches

    study = OmegaConf.load(ROOT / "fairseq_compress/studies/configs" / f"size_sweep_{task}.yaml")
    hydra = OmegaConf.create(recipes.load(f"sweep_{task}"))  # the recipe it starts from merged in, as hydra does
    assert study.task == task and hydra.model._name in study.archs
    assert hydra.task.stop_time_minutes == study.budget_minutes
    assert hydra.task.validate_interval_seconds == study.validate_seconds
    assert (hydra.dataset.max_tokens, hydra.optimization.update_freq[0]) == batches(study)
    assert list(hydra.optimization.lr) == [study.lr] and hydra.lr_scheduler.warmup_updates == study.warmup
    assert hydra.common.seed == study.seed and hydra.common.cpu and not study.extra
    if task == "mt":  # the study's validation flags
        flags = TASKS["mt"][2]
        assert hydra.task.eval_bleu and flags[flags.index("--eval-bleu-args") + 1] == hydra.task.eval_bleu_args
        assert flags[flags.index("--eval-bleu-remove-bpe") + 1] == hydra.task.eval_bleu_remove_bpe


def test_hydra_sweep_mt_run_writes_a_curve(mt_data, tmp_path):
    save_dir = tmp_path / "run"
    run(["fairseq-hydra-train", "--config-dir", CONFIG_DIR, "--config-name", "sweep_mt", f"task.data={mt_data}",
         f"common.user_dir={USER_DIR}", "model._name=transformer_l2_h128", f"checkpoint.save_dir={save_dir}",
         "task.stop_time_minutes=0.05", "task.validate_interval_seconds=1", "dataset.max_tokens=1024",
         f"hydra.run.dir={tmp_path / 'outputs'}"], cwd=tmp_path)
    points = curve(save_dir / "curve.jsonl")
    assert points[-1]["train_seconds"] >= 3 and "bleu" in points[-1]


def test_hydra_sweep_refuses_a_v_drophead_schedule_under_a_time_budget(mt_data, tmp_path):
    """The sweep configs stop by time (max_update is a sentinel): the V would never rise."""
    result = run(["fairseq-hydra-train", "--config-dir", CONFIG_DIR, "--config-name", "sweep_mt",
                  f"task.data={mt_data}", f"common.user_dir={USER_DIR}", "model._name=transformer_l2_h128",
                  f"checkpoint.save_dir={tmp_path / 'run'}", "+model.drophead_p=0.1", "dataset.max_tokens=1024",
                  f"hydra.run.dir={tmp_path / 'outputs'}"], cwd=tmp_path, check=False)
    assert result.returncode != 0
    # hydra prints the error under its own short trace (its handler runs before sys.excepthook)
    assert ("ConfigError: --drophead-schedule v rises to p at --max-update (100000000), but "
            "--stop-time-minutes 12 stops the run by time") in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()


def points(times, values, y="ppl", params=1):
    return [{"train_seconds": t, "updates": t, "tokens": 100 * t, "params": params, y: v} for t, v in zip(times, values)]


def test_crossover_is_where_the_larger_model_pulls_ahead_for_good():
    small = points([10, 20, 30, 40], [10, 8, 6, 5])
    assert crossover_seconds(small, points([10, 20, 30, 40], [12, 9, 5, 4]), "ppl") == 30
    assert crossover_seconds(small, points([10, 20, 30, 40], [9, 7, 5, 4]), "ppl") == 10  # ahead from the start
    assert crossover_seconds(small, points([10, 20, 30, 40], [9, 9, 5, 6]), "ppl") is None  # behind at the end
    # curves sampled at different times are compared on both grids, interpolated; up to the shorter one's end
    assert crossover_seconds(small, points([15, 35, 60], [12, 5.4, 1]), "ppl") == 35
    assert crossover_seconds(points([10, 20], [5, 9], "bleu"), points([10, 20], [6, 8], "bleu"), "bleu") is None
    assert crossover_seconds(points([10, 20], [5, 7], "bleu"), points([10, 20], [4, 8], "bleu"), "bleu") == 20


def test_summarize_reports_sizes_speed_and_crossovers(tmp_path):
    for name, params, values in (("small", 1_000_000, [10, 8, 6, 5]), ("large", 4_000_000, [12, 9, 5, 4])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "curve.jsonl").write_text(
            "".join(json.dumps(p) + "\n" for p in points([10, 20, 30, 40], values, params=params)))
    result = run(["fairseq-compress", "summarize", tmp_path, "--y", "ppl", "--csv", tmp_path / "summary.csv"])
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["run"] for r in rows] == ["small", "large"]
    assert rows[1]["overtakes"] == "small at 30 s" and rows[0]["overtakes"] == "-"
    assert rows[1]["final_ppl"] == "4" and rows[1]["best_ppl"] == "4" and rows[1]["tokens_per_second"] == "100"
    assert "| large | 4,000,000 |" in result.stdout
