"""Bad inputs to the stock tools and the pipelines: one line naming the input, a non-zero exit, no file changed."""
import shutil
from argparse import Namespace

import pytest
from conftest import ROOT, TRAIN_MT, one_line_error, run


def files_under(path):
    return sorted(p.relative_to(path) for p in path.rglob("*")) if path.exists() else []


def test_checkpoint_of_another_arch(mt_checkpoint, mt_data, tmp_path):
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l3_h128", "--max-update", "2", "--save-dir", tmp_path,
                             "--restore-file", mt_checkpoint, "--reset-optimizer"], check=False)
    one_line_error(result, f"Cannot load model parameters from checkpoint {mt_checkpoint}",
                          "another architecture or dictionary?", "Missing key(s) in state_dict")
    assert files_under(tmp_path) == []


def test_empty_data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    result = run(TRAIN_MT + [tmp_path / "data", "-s", "en", "-t", "fr", "--arch", "transformer_l2_h128",
                             "--save-dir", tmp_path / "save"], check=False)
    one_line_error(result, f"No such file or directory: '{tmp_path / 'data'}/dict.en.txt'")
    assert files_under(tmp_path / "save") == []


def test_sentencepiece_model_of_another_corpus(mt_data, mt_checkpoint, mlm_data, tmp_path):
    en_bin, _ = mlm_data
    data = tmp_path / "en_fr"
    shutil.copytree(mt_data, data)
    shutil.copy(en_bin / "spm.model", data / "spm.model")
    bleu = run(["bash", ROOT / "scripts/eval_bleu.sh", mt_checkpoint, data], check=False)
    one_line_error(bleu, f"{data}/dict.", f"does not match {data}/spm.model", "are not pieces")
    pretrain = tmp_path / "en"
    shutil.copytree(en_bin, pretrain)
    shutil.copy(mt_data / "spm.model", pretrain / "spm.model")
    glue = run(["bash", ROOT / "scripts/prepare_glue.sh", ROOT / "data-bin/raw/cls", tmp_path / "cls", pretrain],
               check=False)
    one_line_error(glue, f"{pretrain}/dict.txt does not match {pretrain}/spm.model")
    assert not (tmp_path / "cls").exists() and not list(mt_checkpoint.parent.glob("*.hyp"))


def test_data_dir_with_another_dictionary(mt_checkpoint, mt_data, tmp_path):
    data = tmp_path / "en_fr"
    shutil.copytree(mt_data, data)
    for side in ("en", "fr"):
        with open(data / f"dict.{side}.txt", "a", encoding="utf-8") as f:
            f.writelines(f"extra{i} 1\n" for i in range(8))
    before = files_under(data)
    result = run(["fairseq-generate", data, "--user-dir", ROOT / "fairseq_compress", "--path", mt_checkpoint,
                  "--max-sentences", "8"], check=False)
    one_line_error(result, "another architecture or dictionary?",
                          "size mismatch for encoder.embed_tokens.weight")
    assert files_under(data) == before


def test_fully_sharded_is_refused_by_quant_noise_and_pruning(mt_data, tmp_path):
    from fairseq_compress.criterions.quant_noise import QuantNoiseOptions, check_options
    from fairseq_compress.errors import ConfigError

    pruning = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "2", "--save-dir", tmp_path,
                              "--ddp-backend", "fully_sharded", "--task", "translation_pruning",
                              "--prune-sparsity", "0.5"], check=False)
    one_line_error(pruning, "the *_pruning tasks do not work with --ddp-backend fully_sharded")
    assert files_under(tmp_path) == []
    # fairseq builds the criterion after wrapping the model, which needs fairscale (not installed here)
    options = Namespace(**{**vars(QuantNoiseOptions()), "qn_pq": 0.1, "ddp_backend": "fully_sharded"})
    with pytest.raises(ConfigError, match="--criterion quant_noise does not work with --ddp-backend fully_sharded"):
        check_options(options)
