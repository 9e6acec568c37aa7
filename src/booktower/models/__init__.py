"""The two-tower model: towers return embeddings only; losses and the training task live in `training`."""

from booktower.models.batches import Bags, ItemBatch, SideTensors, UserBatch
from booktower.models.spec import ModelSpec, spec_from_config
from booktower.models.towers import TowerOutput
from booktower.models.two_tower import TwoTower

__all__ = ["Bags", "ItemBatch", "ModelSpec", "SideTensors", "TowerOutput", "TwoTower", "UserBatch", "spec_from_config"]
