"""What every GridS backbone (SmolVLA's, PaliGemma's) does around its sampler, camera by camera."""

from torch import Tensor

from lerobot_grids.grids import GridSampler, Region


class GridSBackboneMixin:
    """``embed_image`` through the backbone's ``sample_image(image, region)``, one camera after another.

    Per call of the policy (set by it before the images are embedded): ``cameras``, how many images make a
    full record; ``image_regions``, per camera in embedding order, the token rows and columns its image covers
    once resized and padded to the backbone's square (``None``: all); ``grids_context``, the instruction for
    an instruction-conditioned sampler. ``sampled_points`` keeps the points of the images embedded since, one
    per camera.
    """

    grids: GridSampler
    sampled_points: list[Tensor]
    cameras: int | None
    image_regions: list[Region | None]
    grids_context: Tensor | None

    def start_grids_record(self) -> None:
        self.sampled_points, self.cameras, self.image_regions, self.grids_context = [], None, [], None

    def embed_image(self, image: Tensor) -> Tensor:
        if len(self.sampled_points) == self.cameras:  # called again without the policy (benchmarks): bounded
            self.sampled_points.clear()
        camera = len(self.sampled_points)
        region = self.image_regions[camera] if camera < len(self.image_regions) else None
        tokens, points = self.sample_image(image, region)
        self.sampled_points.append(points.detach())
        return tokens

    def sample_image(self, image: Tensor, region: Region | None) -> tuple[Tensor, Tensor]:
        """``(tokens [B, K, C], points [B, K, 2])`` of one camera's image, read inside ``region``."""
        raise NotImplementedError
