"""fairseq_hooks: every patch in place after `import fairseq_compress` in any import
order, installed once; durable renames; no example dropped from any batch iterator."""
import os
import subprocess
import sys

import pytest
import torch
from fairseq.data import Dictionary, LanguagePairDataset

import fairseq_compress  # noqa: F401
from fairseq_compress import checkpoint_safety

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
