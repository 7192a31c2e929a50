"""int8 inference: Linear layers swapped for torch's dynamic int8 kernels when
fairseq prepares a model for inference (or at its first forward, where no tool does),
outputs close to fp32, and the stock fairseq-generate with --model-overrides."""
import pytest
import torch
from conftest import USER_DIR, run
from fairseq import checkpoint_utils
from fairseq.modules import MultiheadAttention
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils import parametrize
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

import fairseq_compress  # noqa: F401
from fairseq_compress.errors import ConfigError
from fairseq_compress.modules.weight_parametrizations import PruningMask


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


def test_first_forward_quantizes_where_no_tool_prepares_the_model(mt_checkpoint):
    """fairseq-validate never calls prepare_for_inference_: the override must still take effect, once."""
    [fp32], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)])
    [int8], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)], arg_overrides={"int8_inference": True})
    fp32.eval(), int8.eval()
    tokens, lengths, prev = torch.tensor([[5, 6, 7, 2]]), torch.tensor([4]), torch.tensor([[2, 5, 6, 7]])
    with torch.no_grad():
        expected, got = fp32(tokens, lengths, prev)[0], int8(tokens, lengths, prev)[0]
        assert not any(type(m) is nn.Linear for m in int8.modules()) and not torch.equal(got, expected)
        assert torch.equal(int8(tokens, lengths, prev)[0], got)  # quantized once: the second forward is the same
    [training], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)], arg_overrides={"int8_inference": True})
    with pytest.raises(ConfigError, match="--int8-inference is an inference option"):
        training.train()(tokens, lengths, prev)


def test_a_pruning_task_model_runs_int8_with_its_masks_applied(mt_checkpoint):
    """A pruning task's model (built by the saved task in fairseq-validate) holds parametrized weights."""
    [int8], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)], arg_overrides={"int8_inference": True})
    fc1 = int8.encoder.layers[0].fc1
    parametrize.register_parametrization(fc1, "weight", PruningMask(fc1.weight))
    fc1.parametrizations.weight[0].mask[:3] = False
    pruned = fc1.weight.detach().clone()
    int8.eval().quantize_for_inference()
    quantized = int8.encoder.layers[0].fc1
    assert isinstance(quantized, DynamicInt8Linear) and not (quantized.weight().dequantize()[:3]).any()
    assert (quantized.weight().dequantize() - pruned).abs().max() < 0.05


def test_stock_generate_with_model_overrides(mt_checkpoint, mt_data):
    result = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", mt_checkpoint,
                  "--gen-subset", "test", "--beam", "2", "--max-sentences", "50", "--max-len-b", "10",
                  "--num-workers", "0", "--model-overrides", "{'int8_inference': True}"])
    log = result.stdout + result.stderr
    assert "Linear layers run with torch's dynamic int8 kernels" in log and "BLEU" in log


def test_int8_model_is_torch_ao_quantize_dynamic_of_the_fp32_one(mt_checkpoint):
    """The reference: torch.ao's quantize_dynamic of the fp32 model (fairseq's attention told to call its
    projections): the same int8 weights and bitwise the same outputs."""
    import copy

    [fp32], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)])
    [int8], _ = checkpoint_utils.load_model_ensemble([str(mt_checkpoint)], arg_overrides={"int8_inference": True})
    int8.eval().quantize_for_inference()
    reference = copy.deepcopy(fp32).eval()
    for module in reference.modules():
        if isinstance(module, MultiheadAttention):
            module.skip_embed_dim_check = True
    torch.ao.quantization.quantize_dynamic(reference, {nn.Linear}, dtype=torch.qint8, inplace=True)
    quantized = dict(int8.named_modules())
    for name, module in reference.named_modules():
        if isinstance(module, DynamicInt8Linear):
            assert torch.equal(quantized[name].weight().int_repr(), module.weight().int_repr()), name
            assert quantized[name].weight().q_scale() == module.weight().q_scale(), name
    tokens, lengths, prev = torch.tensor([[5, 6, 7, 8, 2]]), torch.tensor([5]), torch.tensor([[2, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(int8(tokens, lengths, prev)[0], reference(tokens, lengths, prev)[0])
