"""The two-tower model: towers return embeddings only; losses and the training task live in `training`."""

from booktower.models.batches import Bags, ItemBatch, SideTensors, UserBatch
from booktower.models.encode import encode_items, encode_users
from booktower.models.ensemble import Ensemble, ensemble_of
from booktower.models.io import load_model, save_model
from booktower.models.spec import ModelSpec, spec_from_config
from booktower.models.towers import TowerOutput
from booktower.models.two_tower import TwoTower

__all__ = [
    "Bags", "Ensemble", "ItemBatch", "ModelSpec", "SideTensors", "TowerOutput", "TwoTower", "UserBatch",
    "encode_items", "encode_users", "ensemble_of", "load_model", "save_model", "spec_from_config",
]
