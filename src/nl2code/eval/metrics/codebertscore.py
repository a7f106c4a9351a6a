"""CodeBERTScore (neulab/code-bert-score; CodeFusion's Python metric) over a local encoder directory.

Algorithm (evaluation.md §4.6): encode candidate and reference with a Hugging Face encoder, take the
token embeddings of one hidden layer and L2-normalise them; ``sim = ĉ·r̂ᵀ``;
``P = Σ_i w_i max_j sim_ij`` over candidate tokens, ``R = Σ_j w_j max_i sim_ij`` over reference tokens,
with uniform weights (special tokens weight 0, punctuation-only tokens masked when ``no_punc``),
normalised to sum 1; ``F1 = 2PR/(P+R)``, ``F3 = 10PR/(9P+R)``. With ``sources`` (the NL prompt) the
source tokens are prepended for encoding and left out of the matching. Inputs longer than the model
window are encoded in windows overlapping by half; a token takes its embedding from the window where
it lies furthest from an edge.

Nothing is downloaded: the encoder and tokenizer load with ``local_files_only=True`` from a directory
(e.g. a saved ``neulab/codebert-python``, whose published layer is 11). Needs the ``[hf]`` extra.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["BertScore", "CodeBertScorer", "best_of_k"]

_PUNCT = set(string.punctuation)


@dataclass(frozen=True)
class BertScore:
    precision: float
    recall: float
    f1: float
    f3: float


class CodeBertScorer:
    """Scores candidates against references with a local encoder.

    Args:
        model_dir: directory with the encoder (``config.json`` + weights) and its tokenizer.
        layer: hidden layer whose token embeddings are matched (``None`` = last).
        no_punc: mask punctuation-only tokens out of the matching.
        device: torch device for the encoder.
    """

    def __init__(self, model_dir: str | Path, layer: int | None = None, no_punc: bool = True, device: str = "cpu"):
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:  # pragma: no cover - depends on the optional extra
            raise ImportError("CodeBERTScore needs transformers: pip install 'nl2code[hf]'") from e
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json (expected a saved Hugging Face encoder)")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.layer, self.no_punc, self.device = layer, no_punc, device
        self.max_len = min(int(getattr(self.model.config, "max_position_embeddings", 512)), 512)
        if getattr(self.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            self.max_len -= 2  # RoBERTa position ids start after the padding index

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def _embed(self, ids: list[int]) -> torch.Tensor:
        """(T, H) L2-normalised embeddings of ``ids`` (no special tokens) in windowed context."""
        body = self.max_len - 2  # room for [CLS] ... [SEP]
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        starts = [0] if len(ids) <= body else list(range(0, len(ids) - body // 2, body // 2))
        best = torch.full((len(ids),), -1.0)
        out = None
        for s in starts:
            window = ids[s : s + body]
            seq = [t for t in (cls,) if t is not None] + window + [t for t in (sep,) if t is not None]
            offset = 1 if cls is not None else 0
            enc = self.model(torch.tensor([seq], device=self.device), output_hidden_states=True)
            hidden = enc.hidden_states[-1 if self.layer is None else self.layer][0]  # (T, H)
            hidden = hidden[offset : offset + len(window)].float().cpu()
            if out is None:
                out = torch.zeros(len(ids), hidden.shape[-1])
            pos = torch.arange(len(window))
            centrality = torch.minimum(pos, len(window) - 1 - pos).float()
            take = centrality > best[s : s + len(window)]
            out[s : s + len(window)][take] = hidden[take]
            best[s : s + len(window)] = torch.maximum(best[s : s + len(window)], centrality)
        if out is None:
            return torch.zeros(0, 1)
        return torch.nn.functional.normalize(out, dim=-1)

    def _keep(self, ids: list[int]) -> torch.Tensor:
        """Mask of tokens that take part in matching (not punctuation-only when ``no_punc``)."""
        if not self.no_punc:
            return torch.ones(len(ids), dtype=torch.bool)
        words = self.tokenizer.convert_ids_to_tokens(ids)
        stripped = [w.replace("Ġ", "").replace("Ċ", "").replace("##", "").replace("▁", "").strip() for w in words]
        return torch.tensor([bool(s) and not all(ch in _PUNCT for ch in s) for s in stripped], dtype=torch.bool)

    def _side(self, code: str, source: str | None) -> torch.Tensor:
        code_ids = self._ids(code)
        src_ids = self._ids(source) if source else []
        emb = self._embed(src_ids + code_ids)[len(src_ids) :]
        return emb[self._keep(code_ids)] if len(code_ids) else emb

    def score_one(self, candidate: str, reference: str, source: str | None = None) -> BertScore:
        c, r = self._side(candidate, source), self._side(reference, source)
        if len(c) == 0 or len(r) == 0:
            return BertScore(0.0, 0.0, 0.0, 0.0)
        sim = c @ r.T  # (Tc, Tr) cosine similarities
        p = sim.max(dim=1).values.mean().item()
        rec = sim.max(dim=0).values.mean().item()
        f1 = 2 * p * rec / (p + rec) if p + rec > 0 else 0.0
        f3 = 10 * p * rec / (9 * p + rec) if 9 * p + rec > 0 else 0.0
        return BertScore(p, rec, f1, f3)

    def score(
        self, candidates: Sequence[str], references: Sequence[str], sources: Sequence[str] | None = None
    ) -> list[BertScore]:
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
        srcs: Sequence[Any] = sources if sources is not None else [None] * len(candidates)
        return [self.score_one(c, r, s) for c, r, s in zip(candidates, references, srcs, strict=True)]


def best_of_k(scores: Sequence[BertScore], k: int, field: str = "f1") -> float:
    """Best ``field`` among the first ``k`` candidates' scores (0 when there are none)."""
    return max((getattr(s, field) for s in scores[:k]), default=0.0)
