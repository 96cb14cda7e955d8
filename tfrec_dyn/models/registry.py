"""Models by name, so the CLI and the TFX Trainer build any model the same way."""

from tfrec_dyn.models.adasplit import AdaSplit
from tfrec_dyn.models.caser import Caser
from tfrec_dyn.models.gru4rec import GRU4Rec
from tfrec_dyn.models.hup import HUP
from tfrec_dyn.models.poprec import PopRec
from tfrec_dyn.models.rdrsr import RDRSR
from tfrec_dyn.models.retr import RETR
from tfrec_dyn.models.sasrec import SASRec

MODELS = {"poprec": PopRec, "gru4rec": GRU4Rec, "caser": Caser, "sasrec": SASRec, "retr": RETR, "rdrsr": RDRSR,
          "adasplit": AdaSplit, "hup": HUP}


def build_model(name: str, vocab_size: int, max_len: int, **hyperparameters):
    """Builds the model registered as `name` (e.g. "sasrec") with its hyperparameters."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(vocab_size=vocab_size, max_len=max_len, **hyperparameters)
