"""fairseq-train that, at every checkpoint save, also writes each rank's model state
(parameters, pruning masks), the weights its forward pass sees (after masks and QAT) and
DropHead rates to SAVE_DIR/rank<R>/<updates>.pt,
so a test can check that data-parallel ranks stay identical. Test-only: fairseq
saves from rank 0 alone, so nothing else shows what the other ranks hold."""
from pathlib import Path

import torch
from torch.nn.utils import parametrize
from fairseq import checkpoint_utils, distributed_utils
from fairseq_cli import train

stock_save_checkpoint = checkpoint_utils.save_checkpoint


def save_checkpoint_and_dump_rank(cfg, trainer, epoch_itr, val_loss):
    result = stock_save_checkpoint(cfg, trainer, epoch_itr, val_loss)
    model = trainer.get_model()
    rates = [m.drophead_p for m in getattr(model, "drophead_modules", [])]
    dump_dir = Path(cfg.save_dir) / f"rank{distributed_utils.get_global_rank()}"
    dump_dir.mkdir(exist_ok=True)
    seen = {name: module.weight.detach() for name, module in model.named_modules()
            if parametrize.is_parametrized(module, "weight")}
    torch.save({"model": model.state_dict(), "seen_weights": seen, "drophead_p": rates},
               dump_dir / f"{trainer.get_num_updates()}.pt")
    return result


checkpoint_utils.save_checkpoint = save_checkpoint_and_dump_rank

if __name__ == "__main__":
    train.cli_main()
