"""Batch prepared rows for the model.

Packed runs (``sequence.packing: true``) flatten a micro-batch into one row, the way transformers'
``DataCollatorWithFlattening`` does: no padding, ``position_ids`` restart at 0 per sample, no attention mask,
so the model's masking builds a block-diagonal causal mask (SDPA/eager) or varlen kernels (flash-attention).
Unpacked runs right-pad to the longest row with an attention mask.

Every batch also carries ``sample_ids`` (a plain list, one list per row); the trainer pops it before the
forward pass and writes it to ``batches.jsonl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


@dataclass
class LoftCollator:
    pad_token_id: int
    packing: bool
    with_ambiguity: bool = False

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return flatten(rows, self.with_ambiguity) if self.packing else pad(rows, self.pad_token_id,
                                                                            self.with_ambiguity)


def _positions(row: dict[str, Any]) -> list[int]:
    pos = row.get("position_ids")
    return list(pos) if pos is not None else list(range(len(row["input_ids"])))


def flatten(rows: Sequence[dict[str, Any]], with_ambiguity: bool = False) -> dict[str, Any]:
    """One [1, total] row; the first label of every sample is masked so no sample predicts the next one."""
    import torch

    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    amb: list[float] = []
    for row in rows:
        p = _positions(row)
        lab = [IGNORE_INDEX if q == 0 else int(x) for q, x in zip(p, row["labels"], strict=True)]
        ids += row["input_ids"]
        labels += lab
        pos += p
        if with_ambiguity:
            amb += [float(a) for a in row["ambiguity"]]
    batch: dict[str, Any] = {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([pos], dtype=torch.long),
        "sample_ids": [list(r.get("sample_ids") or []) for r in rows],
    }
    if with_ambiguity:
        batch["ambiguity"] = torch.tensor([amb], dtype=torch.float32)
    return batch


def pad(rows: Sequence[dict[str, Any]], pad_token_id: int, with_ambiguity: bool = False) -> dict[str, Any]:
    """Right-pad to the longest row; padding has attention 0 and label -100."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    amb = torch.zeros((n, width), dtype=torch.float32)
    for i, row in enumerate(rows):
        k = len(row["input_ids"])
        ids[i, :k] = torch.tensor(row["input_ids"], dtype=torch.long)
        labels[i, :k] = torch.tensor(row["labels"], dtype=torch.long)
        mask[i, :k] = 1
        if with_ambiguity:
            amb[i, :k] = torch.tensor(row["ambiguity"], dtype=torch.float32)
    batch: dict[str, Any] = {"input_ids": ids, "labels": labels, "attention_mask": mask,
                             "sample_ids": [list(r.get("sample_ids") or []) for r in rows]}
    if with_ambiguity:
        batch["ambiguity"] = amb
    return batch
