"""How many tokens a model can read: the length every tokenization of its input is cut to."""

from __future__ import annotations

__all__ = ["usable_positions"]

# Models whose position ids start after the padding id (RoBERTa's create_position_ids_from_input_ids): the first
# pad_token_id + 1 rows of the position table are never a token's, so roberta-base fits 512 of its 514.
_OFFSET_POSITIONS = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text", "ibert",
     "longformer", "mpnet", "xmod", "luke", "markuplm"}
)  # fmt: skip


def usable_positions(config) -> int | None:
    """How many tokens a model's position table holds: max_position_embeddings, less the offset of RoBERTa-style
    position ids (None: the config has no position table)."""
    positions = getattr(config, "max_position_embeddings", None)
    model_type = getattr(config, "model_type", None)
    if model_type in ("deberta", "deberta-v2") and not getattr(config, "position_biased_input", True):
        return None  # relative positions only: no table to run past (deberta-v3 reads any length)
    if positions is not None and model_type in _OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return positions
