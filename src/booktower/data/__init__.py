"""The data layer: ingestion and validation, vocabularies, pruning, splits, features, samplers, synthetic data."""

from booktower.data.errors import DataError, DropLedger
from booktower.data.prepare import prepare
from booktower.data.types import CategoricalField, Interactions, PreparedData, Ragged, SideFeatures, Split
from booktower.data.vocab import UnknownIdError, Vocabulary

__all__ = [
    "CategoricalField", "DataError", "DropLedger", "Interactions", "PreparedData", "Ragged", "SideFeatures",
    "Split", "UnknownIdError", "Vocabulary", "prepare",
]
