"""Helpers the catalog tests share: the Daymet file-name pattern, the items of a catalog."""

from __future__ import annotations

import json
from pathlib import Path

#: Daymet's file names: one file per region, variable and year.
DAYMET = "daymet_v4_daily_{region}_{variable}_{year}.nc"


def item_files(out: Path) -> dict[str, Path]:
    """Item id -> its JSON file, for every item under the catalog folder ``out``."""
    return {
        p.stem: p for p in out.rglob("*.json") if json.loads(p.read_text())["type"] == "Feature"
    }
