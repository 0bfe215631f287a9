"""What a rerun recording file (``.rrd``) holds, read back with the rerun-sdk installed beside LeRobot.

LeRobot 0.4.4 pins ``rerun-sdk<0.27`` and LeRobot 0.6 accepts ``<0.34``; the SDK's reading API moved in
between: ``rerun.dataframe`` until 0.28, recording chunks from 0.31 (``rerun.experimental.RrdReader`` from
0.32). 0.29 and 0.30 read recordings only through a catalog server with ``datafusion``: a test reading a
recording skips there and says why.
"""

from collections import defaultdict
from pathlib import Path

import pytest
import rerun as rr


def logged_components(path: Path, index: str = "log_tick") -> dict[str, list[tuple[int, object]]]:
    """``{"<entity>:<archetype>:<component>": [(index value, value), ...]}`` of every component logged on the
    ``index`` timeline of the recording at ``path``, each in the order of ``index`` (static ones first, with
    ``None`` as their index value where rerun-sdk reads a recording as chunks); entities without their
    leading ``/``."""
    if hasattr(rr, "dataframe"):  # rerun-sdk < 0.29
        table = rr.dataframe.load_recording(str(path)).view(index=index, contents="/**").select().read_all()
        indices = table.column(index).to_pylist()
        return {
            name.lstrip("/"): present(indices, table.column(name).to_pylist())
            for name in table.column_names
            if name.startswith("/")
        }
    columns = defaultdict(list)
    for chunk in chunks(path):
        batch = chunk.to_record_batch()
        if index in batch.schema.names:
            indices = batch.column(index).to_pylist()
        elif chunk.is_static:  # logged with static=True (LeRobot's camera images): on every row of a view
            indices = [None] * batch.num_rows
        else:
            continue
        for name in batch.schema.names:
            if ":" in name:  # a component, "<archetype>:<component>"
                entity = chunk.entity_path.lstrip("/")
                columns[f"{entity}:{name}"] += present(indices, batch.column(name).to_pylist())
    return {
        name: sorted(values, key=lambda item: (item[0] is not None, item[0] or 0))
        for name, values in columns.items()
    }


def present(indices: list, values: list) -> list[tuple[int, object]]:
    """``(index, value)`` of the rows that hold a value."""
    return [(i, value) for i, value in zip(indices, values, strict=True) if value is not None]


def chunks(path: Path):
    try:
        from rerun.experimental import RrdReader  # rerun-sdk >= 0.32
    except ImportError:
        from rerun.recording import Recording, load_recording

        if not hasattr(Recording, "chunks"):
            pytest.skip(f"rerun-sdk {rr.__version__} reads a recording back only through a catalog server")
        return load_recording(str(path)).chunks()
    return RrdReader(path).stream().to_chunks()


def read_points(path: Path) -> dict[str, list]:
    """``{entity: [[K, 2] points of each log]}`` of a rerun recording file, in the order they were logged."""
    return {
        name.split(":")[0]: [value for _, value in values]
        for name, values in logged_components(path).items()
        if name.endswith(":Points2D:positions")
    }


def logged_images(path: Path) -> set[str]:
    """The entities a rerun recording file holds an image at."""
    names = logged_components(path)
    return {name.split(":")[0] for name in names if ":Image:" in name or ":EncodedImage:" in name}
