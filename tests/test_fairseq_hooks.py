"""fairseq_hooks: every patch in place after `import fairseq_compress` in any import
order, installed once; durable renames; no example dropped from any batch iterator."""
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary, LanguagePairDataset
from fairseq.dataclass.configs import DistributedTrainingConfig

import fairseq_compress  # noqa: F401
from fairseq_compress import checkpoint_safety, fairseq_hooks
from fairseq_compress.errors import ConfigError

from conftest import ROOT, USER_DIR, command_env, run

IMPORT_ORDERS = [
    "import fairseq_compress",
    "import fairseq_compress.compress.checkpoint_format, fairseq_compress.checkpoint_safety, fairseq_compress",
    "from fairseq import checkpoint_utils; import fairseq_compress.errors; import fairseq_compress.tasks",
    "import fairseq_compress.fairseq_hooks as h; h.install(); h.install(); import fairseq_compress",
]


@pytest.mark.parametrize("imports", IMPORT_ORDERS)
def test_every_patch_is_in_place_once_in_any_import_order(imports):
    check = (f"{imports}\n"
             "import sys\n"
             "from fairseq import checkpoint_utils\n"
             "from fairseq_compress import fairseq_hooks\n"
             "fairseq_hooks.install()\n"
             "assert fairseq_hooks.installed(), fairseq_hooks.INSTALLED\n"
             "originals = {key: old for key, (old, _) in fairseq_hooks.INSTALLED.items()}\n"
             "assert not any(old is new for old, (_, new) in zip(originals.values(), fairseq_hooks.INSTALLED.values()))\n"
             "assert checkpoint_utils.load_checkpoint_to_cpu.__name__ == 'load_checkpoint_to_cpu'\n"
             "assert fairseq_hooks.INSTALLED[(checkpoint_utils, 'load_checkpoint_to_cpu')][0].__module__ == "
             "'fairseq.checkpoint_utils'\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=command_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_loader_chain_refuses_unsafe_files_and_decodes_compressed_ones(tmp_path):
    """The one replacement does both jobs, in that order."""
    from fairseq import checkpoint_utils

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": Payload()}, unsafe)
    with pytest.raises(checkpoint_safety.UnsafeCheckpointError, match="refusing to load checkpoint"):
        checkpoint_utils.load_checkpoint_to_cpu(str(unsafe))


def test_durable_replace_fsyncs_the_data_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", None)), real_replace(a, b)))
    (tmp_path / "new.tmp").write_bytes(b"checkpoint")
    (tmp_path / "last.pt").write_bytes(b"old")
    checkpoint_safety.durable_replace(tmp_path / "new.tmp", tmp_path / "last.pt")
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]
    assert (tmp_path / "last.pt").read_bytes() == b"checkpoint"


def test_fairseq_checkpoint_saves_and_copies_are_durable(tmp_path, monkeypatch):
    """fairseq's atomic save (a rename) and its copy to checkpoint_last.pt both fsync."""
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    checkpoint_utils.torch_persistent_save({"x": torch.ones(2)}, str(tmp_path / "checkpoint_1_5.pt"))
    PathManager.copy(str(tmp_path / "checkpoint_1_5.pt"), str(tmp_path / "checkpoint_last.pt"), overwrite=True)
    assert synced == [str(tmp_path / "checkpoint_1_5.pt.tmp"), str(tmp_path),
                      str(tmp_path / "checkpoint_last.pt.tmp"), str(tmp_path)]
    assert torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["x"].sum() == 2


def pair_dataset(n, vocab):
    """n sentence pairs of lengths 1 .. 20 in a mixed order."""
    lengths = [(i * 7) % 20 + 1 for i in range(n)]
    src = [torch.randint(4, len(vocab), (length,)) for length in lengths]
    return LanguagePairDataset(src, lengths, vocab, src, lengths, vocab)


@pytest.mark.parametrize("size", [37, 61, 100])
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_every_example_is_in_exactly_one_batch_per_epoch(size, split):
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    vocab = Dictionary()
    for i in range(30):
        vocab.add_symbol(f"w{i}")
    task = TranslationTask(TranslationConfig(), vocab, vocab)
    iterator = task.get_batch_iterator(pair_dataset(size, vocab), max_tokens=160, max_sentences=16,
                                       required_batch_size_multiple=8, seed=1, epoch=1)
    for epoch in range(2):
        ids = [i for batch in iterator.next_epoch_itr(shuffle=split == "train") for i in batch["id"].tolist()]
        assert sorted(ids) == list(range(size)), (split, epoch)


def test_fairseq_generate_translates_every_line(mt_data, mt_checkpoint, tmp_path):
    """13 sentences in batches of 8: stock fairseq 0.12 translates the 8 shortest."""
    symbols = [line.split()[0] for line in (mt_data / "dict.en.txt").read_text().splitlines()[:40]]
    raw = tmp_path / "raw"
    raw.mkdir()
    for lang in ("en", "fr"):
        (raw / f"test.{lang}").write_text("".join(" ".join(symbols[:n + 1]) + "\n" for n in range(13)))
    run(["fairseq-preprocess", "-s", "en", "-t", "fr", "--testpref", raw / "test", "--destdir", tmp_path / "bin",
         "--srcdict", mt_data / "dict.en.txt", "--tgtdict", mt_data / "dict.fr.txt", "--workers", "1"])
    result = run(["fairseq-generate", tmp_path / "bin", "--user-dir", USER_DIR, "--path", mt_checkpoint,
                  "--batch-size", "8", "--beam", "1", "--max-len-b", "5"])
    assert sorted(int(line.split("\t")[0][2:]) for line in result.stdout.splitlines() if line.startswith("H-")) \
        == list(range(13))


TORCHRUN_RANK_1 = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}


def distributed_cfg(argv, monkeypatch, env=TORCHRUN_RANK_1, **flags):
    """What fairseq's call_main receives from the hook, for a CPU fairseq-train started with `argv`
    in the launcher environment `env`; `flags` set DistributedTrainingConfig fields, as argv would."""
    monkeypatch.setattr(sys, "argv", ["fairseq-train", "DATA", *argv])
    for key in TORCHRUN_RANK_1:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    dist = DistributedTrainingConfig(distributed_backend="gloo", ddp_backend="legacy_ddp")
    for key, value in flags.items():
        setattr(dist, key, value)
    cfg = SimpleNamespace(common=SimpleNamespace(cpu=True), distributed_training=dist,
                          checkpoint=SimpleNamespace(load_checkpoint_on_all_dp_ranks=False))
    received = []
    fairseq_hooks.distributed_call_main(lambda cfg, main: received.append(cfg))(cfg, main=None)
    return received[0]


def test_torchrun_sets_the_world_rank_and_device_on_cpu(monkeypatch):
    for argv, flags in (([], {}), (["--distributed-world-size", "2"], {"distributed_world_size": 2})):
        dist = distributed_cfg(argv, monkeypatch, **flags).distributed_training
        assert (dist.distributed_world_size, dist.distributed_rank, dist.distributed_init_method) == (2, 1, "env://")
        assert dist.distributed_no_spawn and dist.device_id == 0  # no GPU: no CUDA device index


def test_every_rank_loads_the_checkpoint_it_resumes(monkeypatch):
    assert distributed_cfg([], monkeypatch).checkpoint.load_checkpoint_on_all_dp_ranks
    by_hand = distributed_cfg([], monkeypatch, env={}, distributed_world_size=2, distributed_init_method="tcp://h:1")
    assert by_hand.checkpoint.load_checkpoint_on_all_dp_ranks
    alone = distributed_cfg([], monkeypatch, env={})  # one process, no launcher: as fairseq
    assert alone.distributed_training.distributed_init_method is None
    assert not alone.checkpoint.load_checkpoint_on_all_dp_ranks


@pytest.mark.parametrize("argv, flags, message", [
    (["--distributed-world-size", "4"], {"distributed_world_size": 4},
     "--distributed-world-size 4 disagrees with the launcher's WORLD_SIZE=2: drop the flag (the launcher sets the "
     "world) or start 4 processes"),
    (["--distributed-world-size=1"], {"distributed_world_size": 1},  # the default value, given on the command line
     "--distributed-world-size 1 disagrees with the launcher's WORLD_SIZE=2"),
    (["--distributed-backend", "nccl"], {"distributed_backend": "nccl"},
     "--distributed-backend nccl needs CUDA; on CPU pass --distributed-backend gloo"),
    (["--ddp-backend", "pytorch_ddp"], {"ddp_backend": "pytorch_ddp"},
     "--ddp-backend pytorch_ddp needs CUDA; on CPU pass --ddp-backend legacy_ddp (or no_c10d)"),
])
def test_torchrun_refuses_what_cannot_run(argv, flags, message, monkeypatch):
    with pytest.raises(ConfigError, match=re.escape(message)):
        distributed_cfg(argv, monkeypatch, **flags)
