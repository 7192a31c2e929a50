"""Exact resume after kill -9 with DropHead, quant-noise and gradual pruning (weights; heads, neurons and
layers) on, and saves a kill cannot corrupt."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from fairseq_compress.checkpoint_safety import load_state

from conftest import ELECTRA_PRETRAIN, ROOT, TRAIN_MLM, TRAIN_MT, command_env, run

DUMPING = [sys.executable, ROOT / "tests/train_dumping_ranks.py"]  # fairseq-train + per-save dumps of state and rates
MAX_UPDATE = 12
EVERY_FEATURE = ["--drophead-p", "0.2", "--warmup-updates", "2", "--max-update", MAX_UPDATE,
                 "--save-interval-updates", "3", "--prune-sparsity", "0.5", "--prune-schedule", "gradual",
                 "--prune-start-update", "1", "--prune-end-update", "9", "--prune-frequency", "2",
                 "--criterion", "quant_noise", "--qn-pq", "0.1"]


def mt_command(mt_data, *_):
    return TRAIN_MT[1:] + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning",
                           *EVERY_FEATURE, "--qn-criterion", "label_smoothed_cross_entropy"]


def mt_structured_command(mt_data, *_):
    """Heads (by gradient importance, accumulated across saves), neurons and layers."""
    return mt_command(mt_data) + ["--prune-granularity", "head,neuron,layer", "--prune-score", "gradient"]


def mlm_command(_, mlm_data):
    return [mlm_data[0], *TRAIN_MLM, "--task", "masked_lm_pruning", "--arch", "roberta_l2_h128",
            "--tokens-per-sample", "64", "--max-tokens", "1024", *EVERY_FEATURE, "--qn-criterion", "masked_lm"]


def electra_command(_, mlm_data):  # the later --task / --criterion win over ELECTRA_PRETRAIN's
    return [mlm_data[0], *TRAIN_MLM, *ELECTRA_PRETRAIN, "--task", "masked_lm_pruning", *EVERY_FEATURE,
            "--qn-criterion", "electra"]


def final_dump(save_dir):
    return torch.load(save_dir / "rank0" / f"{MAX_UPDATE}.pt", weights_only=True)


def assert_same_run(resumed, uninterrupted):
    assert resumed["drophead_p"] == uninterrupted["drophead_p"] and max(uninterrupted["drophead_p"]) > 0
    assert resumed["model"].keys() == uninterrupted["model"].keys()
    assert any(key.endswith(".0.mask") for key in resumed["model"])
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def saved_update(save_dir):
    """The update of SAVE_DIR/checkpoint_last.pt (saved atomically: a kill leaves a whole one)."""
    return load_state(save_dir / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"]


def kill_after_first_save(cmd, save_dir, delay, saved="checkpoint_last.pt"):
    """Start cmd, SIGKILL it `delay` s after save_dir/`saved` (its first checkpoint_last.pt) appears; True if it
    was still running."""
    process = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=command_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while not (save_dir / saved).exists() and process.poll() is None:
        time.sleep(0.05)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    return process.wait() == -signal.SIGKILL


@pytest.mark.parametrize("command", [mt_command, mt_structured_command, mlm_command, electra_command])
def test_kill_9_then_rerun_equals_an_uninterrupted_run(command, mt_data, mlm_data, tmp_path):
    cmd = DUMPING + command(mt_data, mlm_data)
    run(cmd + ["--save-dir", tmp_path / "whole"])
    killed = tmp_path / "killed"
    # at a random moment after the first save; again, at once after it, if that kill came after the last save
    for delay in (random.Random(os.environ.get("PYTEST_XDIST_WORKER", "")).uniform(0, 1.0), 0.0):
        shutil.rmtree(killed, ignore_errors=True)
        if kill_after_first_save(cmd + ["--save-dir", killed], killed, delay) and saved_update(killed) < MAX_UPDATE:
            break
    else:
        raise AssertionError("the run was killed after its last save, or ended: the rerun would resume nothing")
    run(cmd + ["--save-dir", killed])  # the same command resumes from checkpoint_last.pt
    assert_same_run(final_dump(killed), final_dump(tmp_path / "whole"))


def test_kill_during_a_checkpoint_copy_keeps_the_last_checkpoint(mt_data, tmp_path):
    cmd = mt_command(mt_data)
    killed = run([sys.executable, ROOT / "tests/train_killed_mid_copy.py", *cmd, "--save-dir", tmp_path], check=False)
    assert killed.returncode == -signal.SIGKILL
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)  # whole: the previous save
    assert state["optimizer_history"][-1]["num_updates"] == 3
    run(DUMPING + cmd + ["--save-dir", tmp_path])
    whole = tmp_path / "whole"
    run(DUMPING + cmd + ["--save-dir", whole])
    assert_same_run(final_dump(tmp_path), final_dump(whole))
