"""The task suites the GridS-against-dense comparison (:mod:`lerobot_grids.evidence.demo`) runs on.

- ``tabletop``: our offline tabletop task (``--env.type=grids_tabletop``), two cameras, one task with a named
  block, out-of-distribution variants of what the cameras see; the base policy is the shipped pretrained one.
- ``metaworld``: Meta-World, the benchmark LeRobot ships (``--env.type=meta_world_cpu``: LeRobot's env
  rendered for a CPU), one camera, several tasks trained together and evaluated one by one, a moved camera as
  the shifted variant; the base policy is the tabletop's (its tiny SmolVLM and action expert, pretrained on
  the tabletop task, never on Meta-World), fine-tuned with the vision tower trained too.

Each suite says how to record its expert dataset, how to make its env config for ``lerobot-eval`` (one task
and variant), and what its variants are; the blank-image variant (images black) of each gives the floor of a
policy that ignores the images.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lerobot.envs.configs import EnvConfig


@dataclass(frozen=True)
class Benchmark:
    name: str  # lerobot-grids-demo --benchmark
    env_type: str  # lerobot-eval --env.type
    title: str  # what the report calls it
    recipe: str  # the lerobot-train config: a shipped config's name (lerobot_grids.configs) or a file
    act_recipe: str  # the same for the ACT policies (act, act_k<K>)
    repo_id: str  # of the recorded expert dataset
    tasks: tuple[str, ...]  # evaluated one by one; () for an env with one task
    shifted_variants: tuple[str, ...]  # what the cameras see changed; never in the training data
    measures_pointing: (
        bool  # whether pointing at the named object can be scored (lerobot_grids.evidence.pointing)
    )
    dataset_text: str  # the report's sentence on the dataset, with {episodes}, {last} and {tasks}
    base_text: str  # what the base policy was pretrained on
    shift_text: str  # the report's sentence on the shifted variants
    image_size: int  # of the env's cameras
    episode_length: int  # steps before an episode is cut

    @property
    def variants(self) -> list[str]:
        return ["default", *self.shifted_variants]

    def base_policy(self) -> Path:
        from lerobot_grids.evidence.tabletop_pretrain import PRETRAINED_TABLETOP_SMOLVLA

        return PRETRAINED_TABLETOP_SMOLVLA

    def record(self, root: Path, episodes: int) -> None:
        """The expert dataset: ``episodes`` per task."""
        if self.name == "tabletop":
            from lerobot_grids.envs.tabletop_dataset import record_expert_episodes

            record_expert_episodes(
                root, episodes, self.repo_id, image_size=self.image_size, episode_length=self.episode_length
            )
        else:
            from lerobot_grids.envs.metaworld_dataset import record_metaworld_experts

            record_metaworld_experts(
                root,
                list(self.tasks),
                episodes,
                self.repo_id,
                image_size=self.image_size,
                episode_length=self.episode_length,
            )

    def env(self, task: str | None, variant: str) -> EnvConfig:
        if self.name == "tabletop":
            from lerobot_grids.envs import GridSTabletopEnv

            return GridSTabletopEnv(
                variant=variant, image_size=self.image_size, episode_length=self.episode_length
            )
        from lerobot_grids.envs import MetaWorldCPUEnv

        return MetaWorldCPUEnv(
            task=task, variant=variant, image_size=self.image_size, episode_length=self.episode_length
        )

    def env_options(self, task: str | None, variant: str) -> str:
        """The same env on ``lerobot-eval``'s command line (its settings where they are not the env's
        defaults)."""
        defaults = {field.name: field.default for field in dataclasses.fields(type(self.env(task, variant)))}
        return (
            f"--env.type={self.env_type}"
            + (f" --env.task={task}" if task else "")
            + f" --env.variant={variant}"
            + "".join(
                f" --env.{name}={getattr(self, name)}"
                for name in ("image_size", "episode_length")
                if getattr(self, name) != defaults[name]
            )
        )


TABLETOP = Benchmark(
    name="tabletop",
    env_type="grids_tabletop",
    title="`grids_tabletop`",
    recipe="smolvla_grids_tabletop",
    act_recipe="act_grids_tabletop",
    repo_id="local/grids_tabletop",
    tasks=(),
    shifted_variants=("distractors", "texture", "lighting", "camera"),
    measures_pointing=True,
    image_size=128,
    episode_length=20,
    dataset_text="{episodes} expert episodes of the `default` variant (scenes 0-{last})",
    base_text="grounding, then reach; never trained to pick",
    shift_text="The OOD columns change only what the cameras see (unseen distractors, table texture and "
    "background, lighting, a moved front camera); no OOD scene is in the training data.",
)
METAWORLD = Benchmark(
    name="metaworld",
    env_type="meta_world_cpu",
    title="Meta-World (`meta_world_cpu`)",
    recipe="smolvla_grids_metaworld",
    act_recipe="act_grids_metaworld",
    repo_id="local/grids_metaworld",
    # easy-group tasks whose object moves between episodes and is large in the image (pilot: reach's and
    # push's goals, a few pixels at 224x224, were near the floor for dense; docs/metaworld.md)
    tasks=("button-press-v3", "plate-slide-v3", "door-open-v3", "window-open-v3"),
    shifted_variants=("camera",),
    measures_pointing=False,
    image_size=224,
    episode_length=200,
    dataset_text="{episodes} expert episodes per task (Meta-World's scripted experts, scenes 0-{last}, "
    "successful episodes only) of {tasks}, in one dataset",
    base_text="the tabletop task's: grounding, then reach on tabletop scenes; never trained on Meta-World",
    shift_text="The shifted column changes only what the camera sees (`camera`: the camera moved 8 cm right, "
    "12 cm towards the robot and 6 cm up); no shifted scene is in the training data "
    "(`--env.variant=lighting`, the lights dimmer and warmer, is left out of the comparison to halve its "
    "evaluation time on a CPU).",
)
BENCHMARKS = {benchmark.name: benchmark for benchmark in (TABLETOP, METAWORLD)}
