"""Data-parallel training on CPU (scripts/train_ddp_cpu.sh, gloo) with every plugin feature."""
import sys

import pytest
import torch

from conftest import ELECTRA_PRETRAIN, ROOT, TRAIN_MLM, TRAIN_MT, run

LAUNCH = ["bash", ROOT / "scripts/train_ddp_cpu.sh", "2", "--"]
DUMPING = {"FAIRSEQ_TRAIN": f"{sys.executable} {ROOT / 'tests/train_dumping_ranks.py'}"}
PRUNE = ["--task", "translation_pruning", "--prune-sparsity", "0.5", "--prune-schedule", "gradual",
         "--prune-start-update", "1", "--prune-end-update", "5", "--prune-frequency", "1"]
EVERY_FEATURE = [*PRUNE, "--drophead-p", "0.2", "--max-update", "6", "--warmup-updates", "2",
                 "--criterion", "quant_noise", "--qn-criterion", "label_smoothed_cross_entropy", "--qn-pq", "0.1"]


def train_args(tool):
    """TRAIN_MT without its leading fairseq-train: the launcher runs the trainer."""
    assert tool[0] == "fairseq-train"
    return tool[1:]


def rank_dumps(save_dir):
    dumps = {}
    for rank in (0, 1):
        files = sorted((save_dir / f"rank{rank}").glob("*.pt"), key=lambda p: int(p.stem))
        dumps[rank] = {int(f.stem): torch.load(f, weights_only=True) for f in files}
    return dumps


def assert_ranks_identical(save_dir, saves):
    dumps = rank_dumps(save_dir)
    assert sorted(dumps[0]) == sorted(dumps[1]) == saves
    for update in saves:
        zero, one = dumps[0][update], dumps[1][update]
        assert zero["drophead_p"] == one["drophead_p"]
        assert zero["model"].keys() == one["model"].keys()
        for key, value in zero["model"].items():
            assert torch.equal(value, one["model"][key]), (update, key)
    return dumps


def test_translation_with_drophead_quant_noise_and_pruning_on_two_ranks(mt_data, tmp_path):
    result = run(LAUNCH + train_args(TRAIN_MT) + [mt_data, "--arch", "transformer_l2_h128", *EVERY_FEATURE,
                                                  "--save-interval-updates", "3", "--save-dir", tmp_path,
                                                  "--log-interval", "1", "--log-format", "simple"], env=DUMPING)
    assert "2 ranks" in result.stderr and "distributed init (rank 0)" in result.stderr
    dumps = assert_ranks_identical(tmp_path, [3, 6])
    last = dumps[0][6]
    masks = [v for k, v in last["model"].items() if k.endswith(".0.mask")]
    assert masks and sum(int((~m).sum()) for m in masks) > 0  # pruning ran, identically on both ranks
    assert all(p > 0 for p in last["drophead_p"])
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == 6
    assert state["cfg"]["distributed_training"]["distributed_world_size"] == 2


def test_electra_with_drophead_quant_noise_and_pruning_on_two_ranks(mlm_data, tmp_path):
    en_bin, _ = mlm_data
    # the later --task / --criterion win over ELECTRA_PRETRAIN's
    pruned_noised = ["--task", "masked_lm_pruning", *PRUNE[2:], "--criterion", "quant_noise",
                     "--qn-criterion", "electra", "--qn-pq", "0.1"]
    run(LAUNCH + [en_bin, *TRAIN_MLM, *ELECTRA_PRETRAIN, *pruned_noised, "--drophead-p", "0.1", "--max-update", "6",
                  "--warmup-updates", "1", "--save-interval-updates", "3", "--save-dir", tmp_path], env=DUMPING)
    dumps = assert_ranks_identical(tmp_path, [3, 6])
    assert any(key.endswith(".0.mask") and not value.all() for key, value in dumps[0][6]["model"].items())


def test_two_ranks_equal_one_rank_with_double_update_freq(mt_data, tmp_path):
    # No dropout, DropHead or noise: nothing random in the forward pass, so the only
    # difference is where the two micro-batches' gradients are summed.
    deterministic = [mt_data, "--arch", "transformer_l2_h128", *PRUNE, "--max-update", "6",
                     "--dropout", "0", "--attention-dropout", "0", "--max-tokens", "1024"]
    run(LAUNCH + train_args(TRAIN_MT) + deterministic + ["--save-dir", tmp_path / "two"])
    run(TRAIN_MT + deterministic + ["--update-freq", "2", "--save-dir", tmp_path / "one"])
    two, one = (torch.load(tmp_path / name / "checkpoint_last.pt", weights_only=True)["model"]
                for name in ("two", "one"))
    assert two.keys() == one.keys()
    for key in one:
        if key.endswith(".mask"):
            assert torch.equal(two[key], one[key]), key
        else:
            torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("args, fragment", [
    (["0", "--", "data"], "NPROC must be a positive integer, got '0'"),
    (["2"], "give the fairseq-train arguments after --"),
    (["2", "--", "data", "--distributed-world-size", "4"], "--distributed-world-size is set by train_ddp_cpu.sh"),
    (["2", "--", "data", "--ddp-backend", "pytorch_ddp"], "--ddp-backend pytorch_ddp needs CUDA"),
])
def test_launcher_bad_input(args, fragment):
    result = run(["bash", ROOT / "scripts/train_ddp_cpu.sh", *args], check=False)
    assert result.returncode == 2 and fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_failing_rank_stops_the_launch(mt_data, tmp_path):
    result = run(LAUNCH + train_args(TRAIN_MT) + [mt_data, "--arch", "transformer_l2_h128", "--drophead-p", "1.5",
                                                  "--save-dir", tmp_path], check=False)
    assert result.returncode == 2 and "a rank exited with status 1; the other ranks were stopped" in result.stderr
    assert "--drophead-p must be in [0, 1)" in result.stderr and not list(tmp_path.iterdir())
