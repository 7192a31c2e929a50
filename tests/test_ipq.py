"""iPQ: k-means and the PQ layout against fairseq's, tied weights, the compressed
checkpoint (bytes, exact round trip, stock fairseq loads it), stock fairseq iPQ
training on the shipped yaml, and bad input."""
import csv
import re
import sys

import pytest
import torch
from conftest import ROOT, TRAIN_MT, USER_DIR, one_line_error, run
from fairseq import checkpoint_utils
from fairseq.modules.quantization.pq.pq import PQ

import fairseq_compress  # noqa: F401  (registers archs, installs the loader)
from fairseq_compress.checkpoint_safety import load_state
from fairseq_compress.compress.checkpoint_format import FORMAT_KEY, pq_decode
from fairseq_compress.compress.ipq import Codebook, attach_codebook, compress_checkpoint, kmeans, pq_blocks

IPQ_CONFIG = ROOT / "fairseq_compress/config/ipq"


def test_kmeans_finds_separated_clusters():
    torch.manual_seed(0)
    centers = torch.randn(4, 8) * 10
    labels = torch.arange(400) % 4
    points = centers[labels] + 0.01 * torch.randn(400, 8)
    centroids, assignments = kmeans(points, 4, n_iter=20)
    assert len(set(assignments.tolist())) == 4
    for k in range(4):  # every true cluster maps to exactly one centroid, close to its centre
        assert len(set(assignments[labels == k].tolist())) == 1
        found = centroids[assignments[labels == k][0]]
        torch.testing.assert_close(found, centers[k], atol=0.01, rtol=0)


def test_kmeans_fills_empty_clusters():
    points = torch.zeros(50, 4)
    points[:2] = 1.0  # two distinct points, four centroids asked for
    centroids, assignments = kmeans(points, 4, n_iter=5)
    assert centroids.shape == (4, 4) and assignments.max() < 4


@pytest.mark.parametrize("shape,block", [((6, 16), 8), ((5, 12), 4)])
def test_pq_layout_matches_fairseq(shape, block):
    weight = torch.randn(shape)
    blocks = pq_blocks(weight, block)
    codes = torch.arange(len(blocks))
    torch.testing.assert_close(pq_decode(blocks, codes, shape), weight, atol=0, rtol=0)
    fairseq_pq = PQ(weight, block, n_centroids=len(blocks), verbose=False)
    fairseq_pq.centroids, fairseq_pq.assignments = blocks, codes
    torch.testing.assert_close(fairseq_pq.decode(), weight, atol=0, rtol=0)
    torch.testing.assert_close(fairseq_pq.W.t(), blocks, atol=0, rtol=0)


def test_tied_weight_follows_its_codebook():
    embed = torch.nn.Embedding(10, 8)
    project = torch.nn.Linear(8, 10, bias=False)
    project.weight = embed.weight
    model = torch.nn.ModuleDict({"embed": embed, "project": project})
    centroids, codes = kmeans(pq_blocks(embed.weight.detach(), 4), 3)
    codebook = Codebook(centroids, codes, embed.weight.shape)
    attach_codebook(model, embed.weight, codebook)
    assert not list(embed.parameters(recurse=False)) and not list(project.parameters(recurse=False))
    out = project(embed(torch.tensor([1, 2])))
    torch.testing.assert_close(project.weight, codebook(), atol=0, rtol=0)
    out.sum().backward()
    assert codebook.centroids.grad is not None and codebook.centroids.grad.abs().sum() > 0
    assert [n for n, _ in model.named_parameters()] == ["embed.weight_codebook.centroids"]


@pytest.fixture(scope="module")
def compressed(mt_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("ipq") / "ipq.pt"
    model = compress_checkpoint(mt_checkpoint, IPQ_CONFIG / "transformer.yaml", out, n_iter=4)
    return model, out


def test_compressed_file_stores_uint8_codes_and_fp16(compressed, mt_checkpoint):
    model, out = compressed
    state = load_state(out)
    assert state[FORMAT_KEY] and not state["last_optimizer_state"]
    entries = state["model"]
    ipq = {name: e for name, e in entries.items() if isinstance(e, dict) and e["format"] == "ipq"}
    # 2+2 layers x (2 FFN + 4 or 8 attention) + the shared embedding
    assert len(ipq) == 2 * 6 + 2 * 10 + 1
    assert all(e["codes"].dtype == torch.uint8 and e["centroids"].dtype == torch.float16 for e in ipq.values())
    assert entries["decoder.embed_tokens.weight"] == {"format": "alias", "of": "encoder.embed_tokens.weight"}
    assert entries["decoder.output_projection.weight"]["format"] == "alias"
    dense = [e for e in entries.values() if torch.is_tensor(e) and e.is_floating_point()]
    assert dense and all(e.dtype == torch.float16 for e in dense)
    # round trip: what was saved is exactly the in-memory codebook
    fc1 = model.encoder.layers[0].fc1.weight_codebook
    assert torch.equal(ipq["encoder.layers.0.fc1.weight"]["codes"], fc1.codes)
    assert torch.equal(ipq["encoder.layers.0.fc1.weight"]["centroids"].float(), fc1.centroids.detach())


def test_stock_loader_rebuilds_the_quantized_model_exactly(compressed):
    model, out = compressed
    [loaded], _ = checkpoint_utils.load_model_ensemble([str(out)])
    loaded.eval()
    tokens = torch.tensor([[5, 6, 7, 8, 2]])
    lengths = torch.tensor([5])
    prev = torch.tensor([[2, 5, 6, 7, 8]])
    with torch.no_grad():
        expected = model(tokens, lengths, prev)[0]
        got = loaded(tokens, lengths, prev)[0]
    assert torch.equal(expected, got)
    assert torch.equal(loaded.decoder.output_projection.weight, model.decoder.output_projection.weight)


def test_compressed_file_is_small(compressed, mt_checkpoint):
    result = run(["fairseq-compress", "size", "--path", compressed[1], "--json"])
    import json

    report = json.loads(result.stdout)
    dense_fp32 = report["model_params"] * 4
    # tiny model: LayerNorms and biases weigh more than at l6_h512, still ~10x
    assert report["file_bytes"] * 8 < dense_fp32


def test_stock_generate_validate_and_restore(compressed, mt_data, tmp_path):
    out = compressed[1]
    gen = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", out, "--gen-subset", "test",
               "--beam", "2", "--max-sentences", "50", "--max-len-b", "20", "--num-workers", "0"])
    assert re.search(r"^H-\d+\t", gen.stdout, re.M) and "BLEU" in gen.stdout + gen.stderr
    run(["fairseq-validate", mt_data, "--user-dir", USER_DIR, "--cpu", "--task", "translation", "--path", out,
         "--valid-subset", "valid",
         "--max-tokens", "2048", "--num-workers", "0", "--criterion", "cross_entropy"])
    run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "2", "--save-dir", tmp_path,
                    "--restore-file", out, "--reset-optimizer", "--reset-dataloader", "--reset-meters"])
    assert (tmp_path / "checkpoint_last.pt").exists()


def test_ipq_cli_with_finetuning_between_stages(mt_checkpoint, mt_data, tmp_path):
    out = tmp_path / "ft.pt"
    result = run(["fairseq-compress", "ipq", "--path", mt_checkpoint, "--config", IPQ_CONFIG / "transformer.yaml",
                  "--out", out, "--data", mt_data, "--finetune-updates", "2", "--n-iter", "3"])
    assert '"ratio_vs_fp32_model"' in result.stdout and "iPQ layers" in result.stderr
    plain = tmp_path / "plain.pt"
    run(["fairseq-compress", "ipq", "--path", mt_checkpoint, "--config", IPQ_CONFIG / "transformer.yaml",
         "--out", plain, "--n-iter", "3"])
    tuned, untuned = load_state(out)["model"], load_state(plain)["model"]
    name = "encoder.layers.0.fc1.weight"  # quantized at stage 1, fine-tuned after stages 1-3
    assert torch.equal(tuned[name]["codes"], untuned[name]["codes"])
    assert not torch.equal(tuned[name]["centroids"], untuned[name]["centroids"])


def test_stock_fairseq_ipq_training_runs_all_stages(mt_checkpoint, mt_data, tmp_path):
    # The shipped stages and block sizes with 16 centroids: fairseq's k-means
    # spends minutes re-seeding empty clusters when 256 of them meet a tiny model.
    config = tmp_path / "transformer.yaml"
    config.write_text((IPQ_CONFIG / "transformer.yaml").read_text().replace('{"*": 256}', '{"*": 16}'))
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "3", "--save-dir", tmp_path,
                             "--restore-file", mt_checkpoint, "--reset-optimizer", "--reset-dataloader",
                             "--reset-meters", "--quantization-config-path", config])
    log = result.stdout + result.stderr
    for step in range(3):
        assert f"quantizing model (step={step}" in log
    assert "encoder.layers.1.self_attn.q_proj" in log


def test_bad_input(mt_checkpoint, compressed, tmp_path):
    ipq = ["fairseq-compress", "ipq", "--path", mt_checkpoint]
    out = tmp_path / "out.pt"
    one_line_error(run(ipq + ["--config", IPQ_CONFIG / "roberta.yaml", "--out", out], check=False),
                   "stage 1 (encoder\\.sentence_encoder\\.layers\\.\\d+\\.fc[12]) matches no Linear/Embedding layer")
    bad_block = tmp_path / "bad.yaml"
    bad_block.write_text((IPQ_CONFIG / "transformer.yaml").read_text().replace("fc: 8", "fc: 24"))
    one_line_error(run(ipq + ["--config", bad_block, "--out", out], check=False),
                   "block size 24 does not divide the 128 input features of encoder.layers.0.fc1")
    one_line_error(run(ipq + ["--config", IPQ_CONFIG / "transformer.yaml", "--out", mt_checkpoint], check=False),
                   "would overwrite --path")
    one_line_error(run(["fairseq-compress", "ipq", "--path", compressed[1], "--config", IPQ_CONFIG / "transformer.yaml",
                        "--out", out], check=False), "is already compressed")
    one_line_error(run(ipq + ["--config", tmp_path / "missing.yaml", "--out", out], check=False),
                   "--config")
    assert not out.exists()


def test_ipq_of_a_pruning_task_checkpoint_then_stock_generate(mt_checkpoint, mt_data, tmp_path):
    """Masks (and QAT) are folded into plain weights first; the result loads in fairseq-generate."""
    pruned = tmp_path / "pruned"
    run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning",
                    "--prune-sparsity", "0.5", "--prune-schedule", "gradual", "--prune-end-update", "4",
                    "--prune-frequency", "2", "--qat-bits", "8", "--max-update", "4", "--save-dir", pruned,
                    "--restore-file", mt_checkpoint, "--reset-optimizer", "--reset-dataloader", "--reset-meters"])
    out = tmp_path / "ipq.pt"
    run(["fairseq-compress", "ipq", "--path", pruned / "checkpoint_last.pt", "--config",
         IPQ_CONFIG / "transformer.yaml", "--out", out, "--data", mt_data, "--finetune-updates", "1", "--n-iter", "3"])
    entries = load_state(out)["model"]
    assert entries["encoder.layers.0.fc1.weight"]["format"] == "ipq"
    assert not any(".parametrizations." in name for name in entries)
    gen = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", out, "--beam", "1",
               "--max-sentences", "50", "--max-len-b", "10", "--num-workers", "0"])
    assert gen.stdout.count("\nH-") == 200


def test_ipq_cli_with_distillation(mt_checkpoint, mt_data, tmp_path):
    out = tmp_path / "distilled.pt"
    run(["fairseq-compress", "ipq", "--path", mt_checkpoint, "--config", IPQ_CONFIG / "transformer.yaml", "--out", out,
         "--data", mt_data, "--finetune-updates", "1", "--n-iter", "2", "--distill", "--distill-temperature", "2"])
    assert load_state(out)["model"]["encoder.layers.0.fc1.weight"]["format"] == "ipq"
    missing = run(["fairseq-compress", "ipq", "--path", mt_checkpoint, "--config", IPQ_CONFIG / "transformer.yaml",
                   "--out", tmp_path / "x.pt", "--distill"], check=False)
    one_line_error(missing, "--distill acts in the fine-tuning between stages: pass --data DIR")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_ipq_fine_tuning_is_float32_whatever_the_checkpoint_trained_with(precision, mt_checkpoint, mt_data,
                                                                         monkeypatch):
    """iPQ fine-tunes its centroids in float32 (docs/mixed_precision.md): a checkpoint trained with
    --fp16 or --amp gets fairseq's plain optimizer and an fp32 model, not FP16Optimizer or AMPOptimizer."""
    from fairseq.trainer import Trainer
    from omegaconf import open_dict

    from fairseq_compress.compress.ipq import finetune
    from fairseq_compress.model_loading import load_model

    model, task, cfg = load_model(mt_checkpoint, mt_data)
    with open_dict(cfg):
        cfg.common[precision] = True
    seen, train_step = [], Trainer.train_step

    def recording_train_step(trainer, samples, *args, **kwargs):
        seen.append((type(trainer.optimizer).__name__, {p.dtype for p in trainer.model.parameters()}))
        return train_step(trainer, samples, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", recording_train_step)
    finetune(model, cfg, task, updates=1, lr=1e-4)
    assert seen == [("FairseqAdam", {torch.float32})]


def test_distill_refuses_electra_pretraining_whatever_wraps_its_criterion():
    """ELECTRA's discriminator gives one logit per token and samples its input anew at every call:
    no teacher distribution to distill from, as --criterion electra or wrapped by quant_noise."""
    from omegaconf import OmegaConf

    from fairseq_compress.compress.ipq import check_distillation
    from fairseq_compress.errors import ConfigError

    def check(criterion):
        check_distillation(OmegaConf.create({"criterion": criterion}), "data-bin", 10, 2.0, 0.5)

    for criterion in ({"_name": "electra"}, {"_name": "quant_noise", "qn_criterion": "electra"}):
        with pytest.raises(ConfigError, match="--distill needs one output distribution per position; ELECTRA"):
            check(criterion)
    check({"_name": "label_smoothed_cross_entropy"})
    check({"_name": "quant_noise", "qn_criterion": "masked_lm"})


def test_ipq_size_benchmark_appends_its_row(mt_checkpoint, tmp_path):
    """python -m fairseq_compress.benchmarks.ipq_size on a given checkpoint: the row it appends to --csv."""
    table = tmp_path / "ipq_size.csv"
    out = run([sys.executable, "-m", "fairseq_compress.benchmarks.ipq_size", "--ckpt", mt_checkpoint,
               "--out", tmp_path, "--csv", table]).stdout
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 1 and rows[0]["checkpoint"] == str(mt_checkpoint)
    assert int(rows[0]["params"]) * 4 == int(rows[0]["fp32_model_bytes"]) > int(rows[0]["ipq_file_bytes"])
    assert f"iPQ file is {rows[0]['ratio_vs_fp32_model']}x smaller" in out
