"""Does ``meta_world_cpu``'s rendering change a policy's success? The same policy, tasks and scenes evaluated
with LeRobot's evaluation loop twice: at ``meta_world_cpu``'s settings (224x224, no shadows, no anti-aliasing)
and at LeRobot's own (``lerobot.envs.metaworld``'s 480x480 camera, the model's 4096 shadow map and 4x
anti-aliasing), which is what ``--env.type=metaworld`` renders. Scenes are set by the reset seed, so each
episode is the same scene under both renderings (a paired comparison).

The command: ``lerobot-grids-metaworld-rendering --checkpoint <policy> --output <new file.json>``.
"""

import tempfile
from pathlib import Path

from lerobot_grids.envs import MetaWorldCPUEnv
from lerobot_grids.envs.metaworld import LEROBOT_RENDERING
from lerobot_grids.evidence.benchmarks import METAWORLD
from lerobot_grids.evidence.demo import evaluate


def rendering_check(
    checkpoint: Path, tasks: list[str], episodes: int, episode_length: int = METAWORLD.episode_length
) -> dict:
    """Success per task (%) at each rendering, on scenes 1000 .. 1000 + episodes - 1, episodes cut at the same
    length under both."""
    settings = {"meta_world_cpu": {}, "lerobot": LEROBOT_RENDERING}
    success = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, rendering in settings.items():
            success[name] = {
                task: evaluate(
                    checkpoint,
                    MetaWorldCPUEnv(task=task, episode_length=episode_length, **rendering),
                    episodes,
                    Path(scratch) / name / task,
                )["success"]
                for task in tasks
            }
    return {
        "checkpoint": str(checkpoint),
        "episodes_per_task": episodes,
        "episode_length": episode_length,
        "renderings": settings,
        "success": success,
    }
