"""The Cloud-Optimized GeoTIFF writer's parts: the TIFF file layout and the overviews."""
