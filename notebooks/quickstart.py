# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # lazyraster quickstart
#
# Load the bundled sample catalog (a real Sentinel-2 L2A composite), compute NDVI
# lazily, and look at it. Run from the repository root, or set `CATALOG`.

# %%
import os

import numpy as np

import lazyraster

CATALOG = os.environ.get("LAZYRASTER_SAMPLE", "catalogs/sample/catalog.json")
ds = lazyraster.load(CATALOG, bands=["red", "nir"], chunks=64)
ds

# %% [markdown]
# The Dataset is lazy (dask), georeferenced the rioxarray way, and its variables are
# named by STAC common name, so NDVI needs no arguments.

# %%
print(ds.rio.crs, ds.rio.resolution())
ndvi = ds.geo.ndvi()
ndvi

# %%
values = ndvi.isel(time=0).values  # computes now
print(f"valid pixels: {np.isfinite(values).sum()}, median NDVI {np.nanmedian(values):.3f}")
assert np.nanmin(values) >= -1 and np.nanmax(values) <= 1
