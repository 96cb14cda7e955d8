"""Training: configuration, distribution strategy, the trainer and run directories."""

from tfrec_dyn.training.config import TrainConfig
from tfrec_dyn.training.experiment import EvalArrays, PreparedData
from tfrec_dyn.training.run import Run
from tfrec_dyn.training.strategy import make_strategy, precision_scope
from tfrec_dyn.training.trainer import TrainResult, evaluate_split, train
from tfrec_dyn.training.transfer import TransferrableTrainer

__all__ = ["EvalArrays", "PreparedData", "Run", "TrainConfig", "TrainResult", "TransferrableTrainer", "evaluate_split",
           "make_strategy", "precision_scope", "train"]
