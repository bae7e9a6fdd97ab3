"""Whether XGBoost can train on a CUDA device on this machine, asked of XGBoost itself.

The pinned XGBoost is built with CUDA; on a machine with a visible GPU ``device="cuda"``
really trains there, and without one XGBoost warns and falls back to the CPU. Tests that
ask for a GPU branch on :func:`cuda_available`.
"""

from __future__ import annotations

import functools
import json
import warnings

CUDA_DEVICES = ("cuda", "cuda:0")
"""How XGBoost records a booster trained with ``device="cuda"`` on the first GPU."""


@functools.cache
def cuda_available() -> bool:
    """Whether one boosting round with ``device="cuda"`` ran on CUDA (the booster's config
    names the device XGBoost actually used)."""
    import numpy as np
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA"):
        return False
    matrix = xgb.DMatrix(np.arange(8, dtype=np.float32).reshape(-1, 1), label=[0, 1] * 4)
    with warnings.catch_warnings():  # "No visible GPU is found, setting device to CPU."
        warnings.simplefilter("ignore")
        booster = xgb.train({"device": "cuda", "tree_method": "hist"}, matrix,
                            num_boost_round=1)
    device = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
    return device in CUDA_DEVICES
