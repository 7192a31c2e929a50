"""A CTranslate2 vocabulary map (``export --format ctranslate2 --vmap``) built from the training
data: CTranslate2 then restricts each batch's output softmax to the target pieces its source pieces
map to, plus the always-allowed ones (``translate_batch(..., use_vmap=True)``).

The format is CTranslate2's (``vocabulary_map.cc``): one line per source n-gram, ``SOURCE<TAB>target
pieces``; the line with an empty source lists the pieces allowed in every batch. Here: unigrams only.
Each source piece maps to the `top_k` target pieces most associated with it in the training pairs,
by the Dice coefficient of the sentences they occur in (raw co-occurrence counts would rank the most
frequent target pieces first for every source piece, and those are in the always-allowed list
anyway); the `frequent` most frequent target pieces are always allowed. Neither fairseq nor
CTranslate2 builds such a map (Marian's lexical shortlists come from fast_align, not shipped here).
"""
import torch


def presence(dataset, dictionary) -> torch.Tensor:
    """A sparse [pieces, sentences] 0/1 matrix: which pieces (special symbols excluded) each sentence holds."""
    rows, columns = [], []
    for i in range(len(dataset)):
        pieces = torch.unique(dataset[i])
        pieces = pieces[pieces >= dictionary.nspecial]
        rows.append(pieces)
        columns.append(torch.full_like(pieces, i))
    indices = torch.stack([torch.cat(rows), torch.cat(columns)])
    return torch.sparse_coo_tensor(indices, torch.ones(indices.size(1)), (len(dictionary), len(dataset))).coalesce()


def vocabulary_map_lines(source_data, target_data, source_dict, target_dict, top_k: int, frequent: int):
    """The map's lines (without newlines) for the parallel datasets given."""
    source, target = presence(source_data, source_dict), presence(target_data, target_dict)
    together = torch.sparse.mm(source, target.t()).coalesce()  # sentences holding both pieces
    source_df = torch.sparse.sum(source, 1).to_dense()
    target_df = torch.sparse.sum(target, 1).to_dense()
    s, t = together.indices()
    dice = 2 * together.values() / (source_df[s] + target_df[t])
    lines = ["\t" + " ".join(target_dict[int(i)] for i in target_df.argsort(descending=True)[:frequent]
                             if target_df[i] > 0)]
    by_dice = torch.argsort(dice, descending=True, stable=True)
    order = by_dice[torch.argsort(s[by_dice], stable=True)]  # by source piece, then best association first
    s, t = s[order], t[order]
    starts = torch.searchsorted(s, torch.arange(len(source_dict) + 1))
    for piece in range(source_dict.nspecial, len(source_dict)):
        best = t[starts[piece]:starts[piece + 1]][:top_k]
        if len(best):
            lines.append(f"{source_dict[piece]}\t{' '.join(target_dict[int(i)] for i in best)}")
    return lines


def write_vocabulary_map(path: str, task, top_k: int = 20, frequent: int = 100) -> int:
    """Write the map of `task`'s training split to `path`; returns its number of lines."""
    task.load_dataset("train")
    dataset = task.dataset("train")
    lines = vocabulary_map_lines(dataset.src, dataset.tgt, task.source_dictionary, task.target_dictionary, top_k,
                                 frequent)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return len(lines)
