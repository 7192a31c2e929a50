"""int8 inference: Linear layers swapped for torch's dynamic int8 kernels when
fairseq prepares a model for inference, outputs close to fp32, and the stock
fairseq-generate with --model-overrides."""
import torch
from conftest import USER_DIR, run
from fairseq import checkpoint_utils
from omegaconf import OmegaConf
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

import fairseq_compress  # noqa: F401


def test_prepare_for_inference_swaps_linears_and_stays_close(mt_checkpoint):
    [fp32], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)])
    [int8], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)], arg_overrides={"int8_inference": True})
    fp32.eval(), int8.eval()
    int8.prepare_for_inference_(OmegaConf.create({"generation": {}}))
    assert not any(type(m) is nn.Linear for m in int8.modules())
    assert sum(isinstance(m, DynamicInt8Linear) for m in int8.modules()) == sum(
        type(m) is nn.Linear for m in fp32.modules())
    tokens = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 13, 14, 2]])
    lengths = torch.tensor([6, 6])
    prev = torch.tensor([[2, 5, 6, 7, 8, 9], [2, 10, 11, 12, 13, 14]])
    with torch.no_grad():
        expected = torch.log_softmax(fp32(tokens, lengths, prev)[0], -1)
        got = torch.log_softmax(int8(tokens, lengths, prev)[0], -1)
    assert (got - expected).abs().max() < 0.1
    assert not torch.equal(got, expected)  # int8 kernels really ran


def test_stock_generate_with_model_overrides(mt_checkpoint, mt_data):
    result = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", mt_checkpoint,
                  "--gen-subset", "test", "--beam", "2", "--max-sentences", "50", "--max-len-b", "10",
                  "--num-workers", "0", "--model-overrides", "{'int8_inference': True}"])
    log = result.stdout + result.stderr
    assert "Linear layers run with torch's dynamic int8 kernels" in log and "BLEU" in log
