"""fairseq-compress export --format ctranslate2: the exported model computes what fairseq computes
(log-probabilities at fp32 tolerance, greedy translations identical to fairseq-generate --beam 1),
for dense, shrunk, compressed and pruning-task checkpoints; int8 stays within 1 BLEU."""
import shutil

import pytest
import sacrebleu
import torch

from conftest import TRAIN_MT, USER_DIR, one_line_error, run

# An optional runtime (the export extra): the GPU image has none, and its `pytest -m gpu` must collect.
ctranslate2 = pytest.importorskip("ctranslate2")
MAX_LEN = 50  # fairseq-generate --max-len-b N is CTranslate2's max_decoding_length N


def export(path, data, out, *flags):
    run(["fairseq-compress", "export", "--format", "ctranslate2", "--path", path, "--data", data, "--out", out, *flags])
    return out


def fairseq_greedy(data, path):
    """{sentence id: (source pieces, greedy hypothesis pieces)} of fairseq-generate on the test split."""
    lines = run(["fairseq-generate", data, "--user-dir", USER_DIR, "--path", path, "--beam", "1", "--cpu",
                 "--max-len-b", MAX_LEN, "--batch-size", "64", "--gen-subset", "test"]).stdout.splitlines()
    fields = {kind: {int(line.split("\t")[0][2:]): line.split("\t")[-1].split() for line in lines
                     if line.startswith(f"{kind}-")} for kind in "SH"}
    return {i: (fields["S"][i], fields["H"][i]) for i in fields["S"]}


def ct2_greedy(model_dir, sources, compute_type="default"):
    translator = ctranslate2.Translator(str(model_dir), device="cpu", intra_threads=1, compute_type=compute_type)
    results = translator.translate_batch(sources, beam_size=1, max_decoding_length=MAX_LEN)
    return [result.hypotheses[0] for result in results]


def check_same_translations(data, checkpoint, model_dir):
    """CTranslate2's greedy translations of the test split are fairseq-generate's; return fairseq's."""
    expected = fairseq_greedy(data, checkpoint)
    ids = sorted(expected)
    translated = ct2_greedy(model_dir, [expected[i][0] for i in ids])
    assert translated == [expected[i][1] for i in ids]
    return expected


def test_float32_translations_equal_fairseq_generate_and_the_directory_stands_alone(word_mt, tmp_path):
    import sentencepiece

    data, checkpoint = word_mt
    expected = check_same_translations(data, checkpoint, export(checkpoint, data, tmp_path / "ct2"))
    # DIR alone translates raw text: its sentencepiece model, its vocabulary, its weights.
    moved = shutil.move(tmp_path / "ct2", tmp_path / "elsewhere")
    spm = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "elsewhere" / "spm.model"))
    source = (data / "raw" / "test.en").read_text().splitlines()[0]
    (pieces,) = ct2_greedy(moved, [spm.encode(source, out_type=str)])
    assert pieces == expected[0][1]


def test_log_probabilities_equal_fairseq_at_fp32_tolerance(word_mt, tmp_path):
    from fairseq_compress.model_loading import load_model

    data, checkpoint = word_mt
    out = export(checkpoint, data, tmp_path / "ct2")
    model, task, _ = load_model(checkpoint, data)
    task.load_dataset("test")
    dataset = task.dataset("test")
    samples = [dataset[i] for i in range(8)]
    batch = dataset.collater(samples)
    with torch.no_grad():
        net_output = model(**batch["net_input"])
        log_probs = model.get_normalized_probs(net_output, log_probs=True)
    expected = log_probs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    pieces = lambda tokens, d: [d[t] for t in tokens[:-1]]  # without the final </s>: CTranslate2 adds it
    order = batch["id"].tolist()
    scored = ctranslate2.Translator(str(out), device="cpu").score_batch(
        [pieces(samples[i]["source"], src_dict) for i in order], [pieces(samples[i]["target"], tgt_dict) for i in order])
    for row, result in enumerate(scored):
        length = len(result.log_probs)
        torch.testing.assert_close(torch.tensor(result.log_probs), expected[row, :length], rtol=1e-4, atol=1e-4)
        assert batch["target"][row, length - 1] == tgt_dict.eos()


def test_int8_within_one_bleu_of_float32(word_mt, tmp_path):
    """On the 400 training sentences, which the model translates (30 test ones make BLEU move by more than 1
    for one word)."""
    import sentencepiece

    data, checkpoint = word_mt
    raw = data.parent / "raw"
    spm = sentencepiece.SentencePieceProcessor(model_file=str(data / "spm.model"))
    sources = [spm.encode(line, out_type=str) for line in (raw / "train.en").read_text().splitlines()]
    references = (raw / "train.fr").read_text().splitlines()
    bleu = {}
    for quantization in ("float32", "int8"):
        out = export(checkpoint, data, tmp_path / quantization, "--quantization", quantization)
        hypotheses = [spm.decode(pieces) for pieces in ct2_greedy(out, sources)]
        bleu[quantization] = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert bleu["float32"] > 90, bleu  # a model that translates, so that 1 BLEU means something
    assert abs(bleu["int8"] - bleu["float32"]) <= 1.0, bleu


@pytest.mark.parametrize("compress", [
    ["shrink", "--heads-keep", "0.5", "--ffn-keep", "0.5", "--layers-keep", "1"],
    ["prune", "--sparsity", "0.5", "--bits", "8"],
    ["quantize", "--bits", "4"],
], ids=["shrunk", "pruned-int8", "int4"])
def test_compressed_checkpoints_export_and_translate_as_fairseq_does(word_mt, tmp_path, compress):
    data, checkpoint = word_mt
    small = tmp_path / "small.pt"
    run(["fairseq-compress", *compress, "--path", checkpoint, "--out", small])
    check_same_translations(data, small, export(small, data, tmp_path / "ct2"))


def test_pruning_task_checkpoint_exports_with_its_masks_folded(word_mt, tmp_path):
    data, checkpoint = word_mt
    save = tmp_path / "pruned"
    run(TRAIN_MT + [data, "--arch", "transformer_l2_h128", "--share-all-embeddings", "--task", "translation_pruning",
                    "--prune-sparsity", "0.5", "--prune-schedule", "oneshot", "--max-update", "2", "--lr", "1e-5",
                    "--restore-file", checkpoint, "--reset-optimizer", "--reset-lr-scheduler", "--reset-dataloader", "--save-dir", save])
    pruned = save / "checkpoint_last.pt"
    assert any(k.endswith(".mask") for k in torch.load(pruned, weights_only=False)["model"])
    check_same_translations(data, pruned, export(pruned, data, tmp_path / "ct2"))


def test_one_head_count_per_stack():
    from fairseq.modules import MultiheadAttention
    from torch import nn

    from fairseq_compress.deploy.to_ctranslate2 import stack_heads
    from fairseq_compress.errors import ConfigError
    from fairseq_compress.models.layer_shapes import narrow_attention

    layers = [nn.Module(), nn.Module()]
    for layer in layers:
        layer.self_attn = MultiheadAttention(16, 4, self_attention=True)
    assert stack_heads(layers, ["self_attn"]) == (4, 4)
    narrow_attention(layers[1].self_attn, 2)
    with pytest.raises(ConfigError, match="one head count per stack"):
        stack_heads(layers, ["self_attn"])


def test_bad_input(word_mt, tmp_path):
    data, checkpoint = word_mt
    base = ["fairseq-compress", "export", "--format", "ctranslate2", "--path", checkpoint]
    one_line_error(run(base + ["--out", tmp_path / "x"], check=False), "--data", "spm.model")
    one_line_error(run(base + ["--data", data, "--out", tmp_path / "x", "--quantization", "int3"], check=False),
                   "--quantization int3", "int8_float16")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    one_line_error(run(base + ["--data", data, "--out", existing], check=False), "--out", "exists", "--force")
    assert (existing / "keep.txt").read_text() == "mine"
    (tmp_path / "no_spm").mkdir()
    one_line_error(run(base + ["--data", tmp_path / "no_spm", "--out", tmp_path / "y"], check=False), "--data", "spm.model")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    run(base + ["--data", data, "--out", existing, "--force"])
    assert (existing / "model.bin").exists() and not (existing / "keep.txt").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or ctranslate2.get_cuda_device_count() == 0,
                    reason="needs CUDA and a CUDA build of ctranslate2")
def test_int8_float16_on_cuda_translates_as_float32_on_cpu(word_mt, tmp_path):
    """The serving setup on a GPU: CTranslate2 int8 weights with fp16 activations."""
    data, checkpoint = word_mt
    expected = fairseq_greedy(data, checkpoint)
    ids = sorted(expected)
    out = export(checkpoint, data, tmp_path / "ct2", "--quantization", "int8_float16")
    translator = ctranslate2.Translator(str(out), device="cuda", compute_type="int8_float16")
    results = translator.translate_batch([expected[i][0] for i in ids], beam_size=1, max_decoding_length=MAX_LEN)
    same = sum(result.hypotheses[0] == expected[i][1] for result, i in zip(results, ids))
    assert same >= 0.9 * len(ids), f"{same} of {len(ids)} greedy translations equal fairseq's"


def test_stock_fairseq_transformer_exports(word_mt, tmp_path):
    """fairseq's own `transformer` arch (model name `transformer`), as CTranslate2's converter takes it."""
    data, _ = word_mt
    save = tmp_path / "stock"
    run(TRAIN_MT + [data, "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
                    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
                    "--decoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
                    "--max-update", "30", "--save-dir", save])
    checkpoint = save / "checkpoint_last.pt"
    check_same_translations(data, checkpoint, export(checkpoint, data, tmp_path / "ct2"))
