"""Checkpoints load with torch's safe unpickler; malicious pickles are refused."""
import argparse
import os
import pickle

import pytest
import torch
from fairseq import checkpoint_utils

import fairseq_compress  # noqa: F401  (installs the allow-list)
from fairseq_compress.checkpoint_safety import UnsafeCheckpointError, load_state

from conftest import TRAIN_MT, USER_DIR, one_line_error, run


class RunsCode:
    """Unpickling this object would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def malicious_checkpoint(tmp_path, mt_checkpoint):
    """A real fairseq checkpoint with a code-running object hidden in it."""
    marker = tmp_path / "pwned"
    state = torch.load(mt_checkpoint, weights_only=True)
    state["extra_state"]["payload"] = RunsCode(marker)
    path = tmp_path / "checkpoint_evil.pt"
    torch.save(state, path)
    return path, marker


def test_torch_load_default_is_still_weights_only(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL posix.system"):
        torch.load(path)
    assert not marker.exists()


def test_namespace_checkpoint_loads_safely(tmp_path):
    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(arch="transformer_l2_h128"), "model": {}}, path)
    assert torch.load(path)["args"].arch == "transformer_l2_h128"


def test_plugin_checkpoint_loads_with_fairseq_loader(mt_checkpoint):
    state = checkpoint_utils.load_checkpoint_to_cpu(str(mt_checkpoint))
    assert state["cfg"].model.arch == "transformer_l2_h128"
    assert any(k.endswith("embed_tokens.weight") for k in state["model"])


@pytest.mark.parametrize("loader", [load_state, checkpoint_utils.load_checkpoint_to_cpu])
def test_malicious_pickle_is_refused_without_running(malicious_checkpoint, loader):
    path, marker = malicious_checkpoint
    with pytest.raises(UnsafeCheckpointError, match=f"refusing to load checkpoint {path}.*posix.system"):
        loader(str(path))
    assert not marker.exists()


def test_stock_fairseq_checkpoint_generates_with_plugin(mt_data, tmp_path):
    """A checkpoint of stock fairseq's own 'transformer' arch loads in fairseq-generate."""
    save_dir = tmp_path / "stock"
    run(["fairseq-train", mt_data, "--cpu", "--arch", "transformer", "--encoder-layers", "1",
         "--decoder-layers", "1", "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
         "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128", "--optimizer", "adam",
         "--lr", "0.001", "--max-tokens", "2048", "--max-update", "3", "--save-dir", save_dir,
         "--no-progress-bar", "--num-workers", "0"])
    ckpt = save_dir / "checkpoint_last.pt"
    stock = run(["fairseq-generate", mt_data, "--path", ckpt], check=False)
    assert stock.returncode != 0 and "GLOBAL argparse.Namespace" in stock.stderr  # why the plugin is needed
    generated = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", ckpt, "--max-sentences", "64",
                     "--max-len-b", "10"])
    assert generated.stdout.count("\nH-") == 200


def test_fairseq_generate_refuses_malicious_checkpoint(mt_data, malicious_checkpoint):
    path, marker = malicious_checkpoint
    result = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", path], check=False)
    one_line_error(result, f"error: refusing to load checkpoint {path}")
    assert not marker.exists()


def test_fairseq_train_and_fairseq_compress_refuse_malicious_checkpoint(mt_data, malicious_checkpoint, tmp_path):
    """Resumed by fairseq-train (its save dir's checkpoint_last.pt), read by each of fairseq-compress's
    loaders (the raw state: quantize; the model: export): one line, nothing run, nothing written."""
    path, marker = malicious_checkpoint
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    (save_dir / "checkpoint_last.pt").write_bytes(path.read_bytes())
    resume = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "50", "--save-dir", save_dir],
                 check=False)
    one_line_error(resume, f"error: refusing to load checkpoint {save_dir / 'checkpoint_last.pt'}")
    quantize = run(["fairseq-compress", "quantize", "--path", path, "--bits", "8", "--out", tmp_path / "q.pt"],
                   check=False)
    export = run(["fairseq-compress", "export", "--format", "ctranslate2", "--path", path, "--data", mt_data,
                  "--out", tmp_path / "ct2"], check=False)
    for result in (quantize, export):
        one_line_error(result, f"error: refusing to load checkpoint {path}")
    assert not marker.exists()
    assert sorted(p.name for p in save_dir.iterdir()) == ["checkpoint_last.pt"]
    assert not (tmp_path / "q.pt").exists() and not (tmp_path / "ct2").exists()


def damage(path, how):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "overwritten": b"not a checkpoint\n" * 64}[how])
    return path.read_bytes()


@pytest.mark.parametrize("how", ["truncated", "empty", "overwritten"])
def test_damaged_checkpoint_is_one_line_and_left_alone(mt_checkpoint, mt_data, tmp_path, how):
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    last = save_dir / "checkpoint_last.pt"
    last.write_bytes(mt_checkpoint.read_bytes())
    damaged = damage(last, how)
    generate = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", last], check=False)
    resume = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "50", "--save-dir", save_dir],
                 check=False)
    for result in (generate, resume):
        assert one_line_error(result).startswith(f"error: checkpoint {last} is truncated or damaged")
    assert last.read_bytes() == damaged and sorted(p.name for p in save_dir.iterdir()) == ["checkpoint_last.pt"]


def test_eval_bleu_meters_load_but_object_arrays_do_not(tmp_path):
    """--eval-bleu saves n-gram counts as numpy arrays in the checkpoint's meters."""
    import numpy as np

    path = tmp_path / "meters.pt"
    torch.save({"sum": np.array([636, 36, 32, 28]), "val": np.array([0.5], dtype=np.float32)}, path)
    assert torch.load(path)["sum"].tolist() == [636, 36, 32, 28]
    marker = tmp_path / "pwned"
    torch.save({"sum": np.array([RunsCode(marker)], dtype=object)}, path)
    with pytest.raises(pickle.UnpicklingError, match="ObjectDType"):  # refused before any item
        torch.load(path)
    assert not marker.exists()
