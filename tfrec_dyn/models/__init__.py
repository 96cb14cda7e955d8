"""Sequential recommendation models, all built on `SequentialRecommender`."""

from tfrec_dyn.models.adasplit import AdaSplit
from tfrec_dyn.models.base import SequentialRecommender
from tfrec_dyn.models.caser import Caser
from tfrec_dyn.models.gru4rec import GRU4Rec
from tfrec_dyn.models.hstu import HSTU
from tfrec_dyn.models.hup import HUP
from tfrec_dyn.models.poprec import PopRec
from tfrec_dyn.models.rdrsr import RDRSR
from tfrec_dyn.models.registry import MODELS, build_model
from tfrec_dyn.models.retr import RETR
from tfrec_dyn.models.sasrec import GSASRec, SASRec

__all__ = ["MODELS", "AdaSplit", "Caser", "GRU4Rec", "GSASRec", "HSTU", "HUP", "PopRec", "RDRSR", "RETR", "SASRec",
           "SequentialRecommender", "build_model"]
