"""Models by name, so the CLI and the TFX Trainer build any model the same way."""

import inspect

from tfrec_dyn.models.adasplit import AdaSplit
from tfrec_dyn.models.caser import Caser
from tfrec_dyn.models.gru4rec import GRU4Rec
from tfrec_dyn.models.hstu import HSTU
from tfrec_dyn.models.hup import HUP
from tfrec_dyn.models.poprec import PopRec
from tfrec_dyn.models.rdrsr import RDRSR
from tfrec_dyn.models.retr import RETR
from tfrec_dyn.models.sasrec import GSASRec, SASRec

MODELS = {"poprec": PopRec, "gru4rec": GRU4Rec, "caser": Caser, "sasrec": SASRec, "gsasrec": GSASRec, "hstu": HSTU,
          "retr": RETR, "rdrsr": RDRSR, "adasplit": AdaSplit, "hup": HUP}


def build_model(name: str, vocab_size: int, max_len: int, **hyperparameters):
    """Builds the model registered as `name` (e.g. "sasrec") with its hyperparameters."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    accepted = hyperparameter_names(cls)
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        raise ValueError(f"{name} has no hyperparameter(s) {', '.join(unknown)}; it takes: "
                         f"{', '.join(sorted(accepted))}")
    return cls(vocab_size=vocab_size, max_len=max_len, **hyperparameters)


def hyperparameter_names(cls) -> set:
    """The constructor arguments of `cls` and of the model classes it passes `**kwargs` on to
    (up to `SequentialRecommender`), less the two every model gets from the data."""
    from tfrec_dyn.models.base import SequentialRecommender

    names = set()
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, SequentialRecommender)) or "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names - {"self", "vocab_size", "max_len"}
