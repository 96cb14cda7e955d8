"""Shared fixtures. Tests run with TF_USE_LEGACY_KERAS=1 (set by the Makefile and here)."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains models or runs subprocesses (seconds to a minute)")


@pytest.fixture(scope="session")
def ml100k():
    from tfrec_dyn.data import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(autouse=True)
def _seed():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    np.random.seed(0)
