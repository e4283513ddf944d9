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
# Load the bundled sample catalog (a real Sentinel-2 L2A composite), compute NDVI and
# its 3x3 focal mean lazily, and look at them. Run from the repository root, or set
# `LAZYRASTER_SAMPLE` to the catalog.

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

# %% [markdown]
# ## A focal mean: each pixel the mean of the valid pixels of its 3x3 window
#
# Pixels without data (NaN) are left out of each window, and so is everything beyond
# the edge of the image.

# %%
smooth = ndvi.geo.focal_mean(size=3)
focal = smooth.isel(time=0).values
print(f"median focal mean {np.nanmedian(focal):.3f}")
