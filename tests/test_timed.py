"""translation_timed / masked_lm_timed: training-time budget, timed validation, curve.jsonl."""
import json
import threading
from types import SimpleNamespace

import pytest
import torch

from conftest import TRAIN_MT, USER_DIR, one_line_error, run
from fairseq_compress.tasks.timed import TimedMixin, TrainingClock, flops_estimate, read_curve, write_curve

MT_TIMED = ["--task", "translation_timed", "--max-update", "100000", "--log-interval", "5"]


def read_points(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_clock_stands_still_through_validation(monkeypatch):
    now = iter([0.0, 1.0, 1.5, 9.0, 10.0])
    monkeypatch.setattr("time.perf_counter", lambda: next(now))
    clock = TrainingClock(seconds=5.0)  # a resumed run
    clock.run()  # first train step at 0.0
    assert clock.elapsed() == 6.0
    clock.pause()  # validation starts at 1.5 ...
    clock.run()  # ... until the train step at 9.0
    clock.run()  # later steps keep the clock running
    assert clock.elapsed() == 7.5


def test_curve_is_cut_at_the_restored_update(tmp_path):
    path = tmp_path / "curve.jsonl"
    write_curve(path, [{"updates": u, "train_seconds": u / 10} for u in (10, 20, 30)])
    assert [p["updates"] for p in read_curve(path, 25)] == [10, 20]
    assert read_curve(tmp_path / "missing.jsonl", 25) == []
    assert flops_estimate(1000, 50) == 300_000


class StockTask:
    """The calls TimedMixin makes to the stock task it extends."""

    def __init__(self, cfg):
        self.cfg = cfg

    def reduce_metrics(self, logging_outputs, criterion):
        pass

    def begin_valid_epoch(self, epoch, model):
        pass


def test_a_point_from_several_ranks_stats(tmp_path):
    # With several ranks, fairseq's stats sync (Trainer._fast_stat_sync_sum) hands every
    # logging output back as a float64 tensor: the curve must still hold plain numbers.
    task = type("TimedTask", (TimedMixin, StockTask), {})(SimpleNamespace(
        stop_time_minutes=0.0, validate_interval_seconds=0.0, curve_file=str(tmp_path / "curve.jsonl"),
        eval_bleu=False))
    task.root_config = lambda: SimpleNamespace(dataset=SimpleNamespace(validate_interval_updates=0))
    model = torch.nn.Linear(2, 2)  # 6 parameters
    task.start(0)
    for _ in range(2):  # two updates, each summed over the ranks
        task.reduce_metrics([{"ntokens": torch.tensor(50.0, dtype=torch.float64)}], criterion=None)
    task.begin_valid_epoch(1, model)
    task.post_validate(model, {"num_updates": 2, "loss": torch.tensor(3.5, dtype=torch.float64)}, agg=None)
    [point] = read_points(tmp_path / "curve.jsonl")
    assert point["tokens"] == 100 and point["flops"] == 6 * 6 * 100 and point["loss"] == 3.5
    assert type(point["tokens"]) is type(point["flops"]) is int


class ThreadRanks:
    """torch.distributed's all_reduce(MAX) between threads, each thread one rank."""

    def __init__(self, world_size):
        self.barrier = threading.Barrier(world_size)
        self.sent = {}

    def all_reduce(self, tensor, op=None):
        self.sent[threading.get_ident()] = tensor.clone()
        self.barrier.wait()
        reduced = torch.stack(list(self.sent.values())).amax(dim=0)
        self.barrier.wait()  # every rank has read what was sent before the next call overwrites it
        tensor.copy_(reduced)


def test_ranks_whose_clocks_differ_validate_at_the_same_updates(monkeypatch):
    ranks = ThreadRanks(2)
    for name, value in (("is_initialized", lambda: True), ("get_world_size", lambda: 2),
                        ("get_backend", lambda: "gloo"), ("all_reduce", ranks.all_reduce)):
        monkeypatch.setattr(torch.distributed, name, value)
    clocks = {"ahead": [1.06, 1.30, 2.05], "behind": [0.98, 1.20, 1.95]}  # seconds after each update
    validated = {}

    def rank(name):
        task = type("TimedTask", (TimedMixin, StockTask), {})(SimpleNamespace(
            stop_time_minutes=0.0, validate_interval_seconds=1.0, curve_file=None, eval_bleu=False))
        task.clock, task.next_validation = TrainingClock(), 1.0
        validated[name] = []
        for update_num, seconds in enumerate(clocks[name]):
            task.clock.elapsed = lambda: seconds
            root = SimpleNamespace(dataset=SimpleNamespace(validate_interval_updates=0))
            task.root_config = lambda: root
            task.plan_checks(update_num)
            validated[name].append(root.dataset.validate_interval_updates == update_num + 1)

    threads = [threading.Thread(target=rank, args=(name,)) for name in clocks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    # after the update where the first rank's clock passes each second: one validation per interval
    assert validated == {"ahead": [True, False, True], "behind": [True, False, True]}


def test_budget_stop_timed_validation_and_curve(mt_data, tmp_path):
    save_dir = tmp_path / "run"
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--save-dir", save_dir, *MT_TIMED,
                             "--stop-time-minutes", "0.25", "--validate-interval-seconds", "4",
                             "--eval-bleu", "--eval-bleu-remove-bpe", "sentencepiece",
                             "--eval-bleu-args", '{"beam": 1, "max_len_b": 10}'])
    log = result.stdout + result.stderr
    assert "Stopping training due to num_updates" in log  # the stock stop, moved to the budget
    points = read_points(save_dir / "curve.jsonl")
    assert len(points) >= 3
    for key in ("train_seconds", "updates", "tokens", "loss", "ppl", "bleu", "params", "flops"):
        assert all(key in p for p in points), key
    for field in ("train_seconds", "updates", "tokens", "flops"):
        values = [p[field] for p in points]
        assert values == sorted(values) and len(set(values)) == len(values), field
    # a point after the first update that ends past each multiple of 4 s of training time,
    # and the stop after the first update that ends past the 15 s budget
    windows = [int(p["train_seconds"] // 4) for p in points[:-1]]
    assert windows[0] >= 1 and windows == sorted(set(windows))
    assert points[-2]["train_seconds"] < 15 <= points[-1]["train_seconds"]
    # the stop left a loadable checkpoint at the last point's update
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == points[-1]["updates"]
    generated = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", save_dir / "checkpoint_last.pt",
                     "--max-len-b", "5", "--max-sentences", "100"])
    assert generated.stdout.count("\nH-") == 200


def test_resume_continues_the_curve(mt_data, tmp_path):
    save_dir = tmp_path / "run"
    common = TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--save-dir", save_dir,
                         "--task", "translation_timed", "--validate-interval-updates", "3"]
    run(common + ["--max-update", "6"])
    first = read_points(save_dir / "curve.jsonl")
    assert [p["updates"] for p in first] == [3, 6]
    run(common + ["--max-update", "9"])
    points = read_points(save_dir / "curve.jsonl")
    assert points[:2] == first and [p["updates"] for p in points] == [3, 6, 9]
    assert points[2]["train_seconds"] > first[1]["train_seconds"] and points[2]["tokens"] > first[1]["tokens"]


def test_masked_lm_curve_has_ppl(mlm_data, tmp_path):
    en_bin, _ = mlm_data
    save_dir = tmp_path / "mlm"
    run(["fairseq-train", en_bin, "--user-dir", USER_DIR, "--cpu", "--task", "masked_lm_timed",
         "--criterion", "masked_lm", "--arch", "roberta_l2_h128", "--tokens-per-sample", "64", "--optimizer", "adam",
         "--lr", "0.0005", "--batch-size", "8", "--max-update", "6", "--validate-interval-updates", "3",
         "--save-dir", save_dir, "--no-progress-bar", "--num-workers", "0"])
    points = read_points(save_dir / "curve.jsonl")
    assert [p["updates"] for p in points] == [3, 6] and all(p["ppl"] > 1 for p in points)


@pytest.mark.parametrize("flag", ["--stop-time-minutes", "--validate-interval-seconds"])
def test_bad_input(mt_data, tmp_path, flag):
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--save-dir", tmp_path, *MT_TIMED,
                             flag, "-1"], check=False)
    one_line_error(result, f"error: {flag} must be a number >= 0, got -1.0")
    assert not list(tmp_path.glob("*.pt"))
