"""The environment's model manager: one per environment, emptied by `unload_models` (POST /free)."""
from __future__ import annotations

import torch

from nodes.api import Environment
from nodes.paths import DataPaths
from nodes.sd.handles import model_manager, unload_models


def test_one_manager_per_environment_and_unload(tmp_path):
    env = Environment(DataPaths(tmp_path))
    manager = model_manager(env)
    assert model_manager(env) is manager
    assert model_manager(Environment(DataPaths(tmp_path))) is not manager
    module = torch.nn.Linear(2, 2)
    with manager.use(module):
        pass
    assert manager.resident() == [module]
    unload_models(env)
    assert manager.resident() == []
    unload_models(Environment(DataPaths(tmp_path)))  # no manager yet: nothing to do, no error
