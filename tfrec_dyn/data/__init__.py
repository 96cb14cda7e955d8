"""Data layer: readers, the canonical `Interactions` form, vocabularies, splits, tf.data."""

from tfrec_dyn.data.datasets import BUILTIN, item_titles, load_dataset
from tfrec_dyn.data.input_pipeline import (NegativeSampler, UserStream, pad_left, streamed_training_dataset,
                                           training_dataset)
from tfrec_dyn.data.interactions import Interactions, ReadReport
from tfrec_dyn.data.readers import (
    DataFormatError,
    read_jd_sessions,
    read_log,
    read_movielens_1m,
    read_movielens_100k,
    read_user_item,
)
from tfrec_dyn.data.splits import (
    EvalSplit,
    Split,
    existing_new_users,
    head_mask,
    head_tail_users,
    k_core,
    leave_one_out,
    select_users,
    session_split,
)
from tfrec_dyn.data.vocabulary import OOV_ID, PAD_ID, Vocabulary

__all__ = [
    "BUILTIN", "DataFormatError", "EvalSplit", "Interactions", "Split", "NegativeSampler",
    "OOV_ID", "PAD_ID", "ReadReport", "Vocabulary", "existing_new_users", "head_mask", "head_tail_users",
    "item_titles", "k_core", "leave_one_out", "load_dataset", "pad_left", "read_jd_sessions",
    "read_log", "read_movielens_100k", "read_movielens_1m", "read_user_item", "select_users", "session_split",
    "streamed_training_dataset", "training_dataset", "UserStream",
]
