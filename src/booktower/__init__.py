"""booktower: train, evaluate and serve two-tower book recommenders."""

__version__ = "0.1.0"
