"""Just enough TIFF to assemble a Cloud Optimized GeoTIFF from tiles compressed elsewhere.

:func:`lazyraster.write_geotiff` compresses every dask block (and the overview levels
that fall inside it) into tiles in the block's own task, in parallel: DEFLATE tiles
with :func:`encode_tiles`, other compressions by GDAL into a small tiled GeoTIFF whose
IFD :func:`read_ifds` reads. :func:`write_tiff` then writes the final file: a header,
GDAL's COG "ghost" header, the IFDs of the full resolution and of every overview, then
the compressed tiles copied byte for byte, smallest overview first. Nothing is
decompressed or compressed again there.

Classic TIFF and BigTIFF are read, in either byte order; output is little-endian,
BigTIFF only when the file would not fit in classic TIFF's 32-bit offsets.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import deflate
import numpy as np

__all__ = ["Ifd", "Image", "can_encode", "encode_tiles", "overview_ifd", "read_ifds", "write_tiff"]

# TIFF field types: numpy dtype of one element and elements per value
_TYPES: dict[int, tuple[str, int]] = {
    1: ("u1", 1),  # BYTE
    2: ("u1", 1),  # ASCII
    3: ("u2", 1),  # SHORT
    4: ("u4", 1),  # LONG
    5: ("u4", 2),  # RATIONAL
    6: ("i1", 1),  # SBYTE
    7: ("u1", 1),  # UNDEFINED
    8: ("i2", 1),  # SSHORT
    9: ("i4", 1),  # SLONG
    10: ("i4", 2),  # SRATIONAL
    11: ("f4", 1),  # FLOAT
    12: ("f8", 1),  # DOUBLE
    13: ("u4", 1),  # IFD
    16: ("u8", 1),  # LONG8
    17: ("i8", 1),  # SLONG8
    18: ("u8", 1),  # IFD8
}
LONG, LONG8 = 4, 16
NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH = 254, 256, 257
TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325
STRIP_TAGS = frozenset({273, 278, 279})  # StripOffsets, RowsPerStrip, StripByteCounts
GEO_TAGS = frozenset({33550, 33922, 34264, 34735, 34736, 34737})  # GeoTIFF's tags
GDAL_METADATA = 42112

# GDAL's COG layout: each tile is led by its size (uint32) and trailed by a copy of its
# last 4 bytes; the space after NO leaves room for GDAL to write YES once it edits a file
_GHOST = (
    "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n "
)
_FRAME = 4  # bytes of the leader, and of the trailer


@dataclass
class Ifd:
    """One image file directory: tag number -> (field type, values as a 1-D array)."""

    tags: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict)

    def value(self, tag: int) -> np.ndarray:
        """The values of ``tag`` (raises ``KeyError`` if absent)."""
        return self.tags[tag][1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the image."""
        return int(self.value(IMAGE_LENGTH)[0]), int(self.value(IMAGE_WIDTH)[0])

    @property
    def tiles(self) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and byte counts of the tiles, row-major."""
        offsets, sizes = self.value(TILE_OFFSETS), self.value(TILE_BYTE_COUNTS)
        return offsets.astype(np.uint64), sizes.astype(np.uint64)


def read_ifds(path: str | os.PathLike[str]) -> list[Ifd]:
    """Every IFD of the TIFF file at ``path``, in file order (full resolution first).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, rasterio
    >>> path = os.path.join(tempfile.mkdtemp(), "t.tif")
    >>> grid = {"width": 40, "height": 30, "transform": rasterio.Affine(10, 0, 0, 0, -10, 0)}
    >>> with rasterio.open(path, "w", driver="GTiff", count=1, dtype="uint8", tiled=True,
    ...                    blockxsize=16, blockysize=16, **grid) as dst:
    ...     dst.write(np.zeros((1, 30, 40), np.uint8))
    >>> ifd, = read_ifds(path)
    >>> ifd.shape, len(ifd.tiles[0])
    ((30, 40), 6)
    """
    with open(path, "rb") as f:
        head = f.read(16)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None:
            raise ValueError(f"{path} is not a TIFF file")
        (magic,) = struct.unpack(order + "H", head[2:4])
        if magic == 42:
            count_fmt, entry_fmt, offset_size = "H", "HHI", 4
            (next_ifd,) = struct.unpack(order + "I", head[4:8])
        elif magic == 43:
            count_fmt, entry_fmt, offset_size = "Q", "HHQ", 8
            (next_ifd,) = struct.unpack(order + "Q", head[8:16])
        else:
            raise ValueError(f"{path} is not a TIFF file (magic number {magic})")
        entry_size = struct.calcsize(order + entry_fmt) + offset_size
        ifds = []
        while next_ifd:
            f.seek(next_ifd)
            (n,) = struct.unpack(order + count_fmt, f.read(struct.calcsize(count_fmt)))
            raw = f.read(n * entry_size + offset_size)
            ifd = Ifd()
            for i in range(n):
                entry = raw[i * entry_size : (i + 1) * entry_size]
                tag, ftype, count = struct.unpack(order + entry_fmt, entry[:-offset_size])
                if ftype not in _TYPES:
                    continue  # unknown type: a reader must skip it
                code, per = _TYPES[ftype]
                dtype = np.dtype(code).newbyteorder(order)
                nbytes = count * per * dtype.itemsize
                if nbytes <= offset_size:
                    data = entry[-offset_size:][:nbytes]
                else:
                    (where,) = struct.unpack(
                        order + ("I" if offset_size == 4 else "Q"), entry[-offset_size:]
                    )
                    f.seek(where)
                    data = f.read(nbytes)
                ifd.tags[tag] = (ftype, np.frombuffer(data, dtype).astype(dtype.newbyteorder("<")))
            (next_ifd,) = struct.unpack(
                order + ("I" if offset_size == 4 else "Q"), raw[n * entry_size :]
            )
            ifds.append(ifd)
    return ifds


@dataclass
class Image:
    """One image (a resolution) of the output: its IFD tags and where each tile's bytes are.

    ``tiles`` lists, row-major over the level's tile grid, ``(file, offset, size)`` of
    each compressed tile in the file a block's task wrote.
    """

    ifd: Ifd
    tiles: Sequence[tuple[str, int, int]]


def _encode_ifd(ifd: Ifd, start: int, next_ifd: int, big: bool) -> bytes:
    """Bytes of ``ifd`` placed at ``start``, followed by its out-of-line values."""
    count_fmt, entry_fmt, off_fmt = ("<Q", "<HHQ", "<Q") if big else ("<H", "<HHI", "<I")
    inline = 8 if big else 4
    entries = sorted(ifd.tags.items())
    values_at = (
        start + struct.calcsize(count_fmt) + len(entries) * (struct.calcsize(entry_fmt) + inline)
    )
    values_at += inline  # the next-IFD pointer
    out = bytearray(struct.pack(count_fmt, len(entries)))
    extra = bytearray()
    for tag, (ftype, values) in entries:
        data = values.astype(values.dtype.newbyteorder("<")).tobytes()
        out += struct.pack(entry_fmt, tag, ftype, len(values) // _TYPES[ftype][1])
        if len(data) <= inline:
            out += data.ljust(inline, b"\0")
        else:
            extra += b"\0" * (len(extra) % 2)  # values start on a word boundary
            out += struct.pack(off_fmt, values_at + len(extra))
            extra += data
    out += struct.pack(off_fmt, next_ifd)
    return bytes(out + extra)


def _layout(images: Sequence[Image], big: bool, cog: bool) -> bytes:
    """Header, ghost header and IFDs of the file whose tiles follow them."""
    ghost = b""
    if cog:
        ghost = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST):06d} bytes\n{_GHOST}".encode()
    sizes = [np.array([s for _, _, s in image.tiles], dtype=np.uint64) for image in images]
    offset_type = LONG8 if big else LONG
    count_type = LONG8 if big and any(s.max(initial=0) > 0xFFFFFFFF for s in sizes) else LONG
    dtypes = {LONG: np.uint32, LONG8: np.uint64}
    ifds = []
    for image, s in zip(images, sizes, strict=True):
        tags = dict(image.ifd.tags)
        tags[TILE_OFFSETS] = (offset_type, np.zeros(len(s), dtypes[offset_type]))
        tags[TILE_BYTE_COUNTS] = (count_type, s.astype(dtypes[count_type]))
        ifds.append(Ifd(tags))
    # where the IFDs go (their sizes do not depend on the values of the tile offsets)
    positions = []
    pos = (16 if big else 8) + len(ghost)
    for ifd in ifds:
        pos += pos % 2
        positions.append(pos)
        pos += len(_encode_ifd(ifd, pos, 0, big))
    # then the tiles: smallest overview first, the full resolution last
    frame = _FRAME if cog else 0
    for i in reversed(range(len(images))):
        slots = sizes[i] + 2 * frame
        starts = pos + frame + np.concatenate(([0], np.cumsum(slots)[:-1])).astype(np.uint64)
        ifds[i].tags[TILE_OFFSETS] = (offset_type, starts.astype(dtypes[offset_type]))
        pos += int(slots.sum())
    if not big and pos > 0xFFFFFFFF:
        raise OverflowError("classic TIFF cannot hold this file")
    if big:
        blob = bytearray(b"II" + struct.pack("<HHHQ", 43, 8, 0, positions[0]) + ghost)
    else:
        blob = bytearray(b"II" + struct.pack("<HI", 42, positions[0]) + ghost)
    for ifd, here, after in zip(ifds, positions, [*positions[1:], 0], strict=True):
        blob += b"\0" * (here - len(blob))
        blob += _encode_ifd(ifd, here, after, big)
    return bytes(blob)


def write_tiff(
    path: str | os.PathLike[str],
    images: Sequence[Image],
    *,
    cog: bool = True,
    bigtiff: bool | None = None,
) -> None:
    """Write ``images`` (full resolution first) to ``path``: IFDs first, then the tiles.

    Tiles are written smallest overview first and row-major within a level. With
    ``cog=True`` this is the layout GDAL's COG driver writes: the file starts
    with GDAL's structural metadata, and each tile is framed by its size and a copy of
    its last 4 bytes, which lets GDAL read a tile without its IFD's byte counts. The
    file is classic TIFF unless it needs 64-bit offsets or ``bigtiff=True``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, rasterio
    >>> folder = tempfile.mkdtemp()
    >>> src = os.path.join(folder, "src.tif")
    >>> grid = {"width": 40, "height": 30, "transform": rasterio.Affine(10, 0, 0, 0, -10, 0)}
    >>> with rasterio.open(src, "w", driver="GTiff", count=1, dtype="uint8", tiled=True,
    ...                    blockxsize=16, blockysize=16, compress="deflate", **grid) as dst:
    ...     dst.write(np.arange(1200, dtype=np.uint8).reshape(1, 30, 40))
    >>> ifd, = read_ifds(src)
    >>> offsets, sizes = ifd.tiles
    >>> tiles = [(src, int(o), int(s)) for o, s in zip(offsets, sizes)]
    >>> write_tiff(os.path.join(folder, "out.tif"), [Image(ifd, tiles)])
    >>> with rasterio.open(os.path.join(folder, "out.tif")) as out:
    ...     bool((out.read(1) == np.arange(1200, dtype=np.uint8).reshape(30, 40)).all())
    True
    """
    try:
        head = _layout(images, bool(bigtiff), cog)
    except OverflowError:  # past 4 GiB: 64-bit offsets
        head = _layout(images, True, cog)
    order = [tile for image in reversed(images) for tile in image.tiles]
    last_use = {src: n for n, (src, _, _) in enumerate(order)}
    handles: dict[str, int] = {}  # open only from a file's first tile to its last
    try:
        with open(path, "wb") as out:
            out.write(head)
            out.flush()
            dst, pos = out.fileno(), len(head)
            for n, (src, offset, size) in enumerate(order):
                if src not in handles:
                    handles[src] = os.open(src, os.O_RDONLY)
                fd = handles[src]
                if cog:  # the leader
                    os.pwrite(dst, struct.pack("<I", size), pos)
                    pos += _FRAME
                _copy_range(fd, dst, offset, pos, size)
                pos += size
                if cog:  # the trailer
                    os.pwrite(dst, os.pread(fd, _FRAME, offset + size - _FRAME), pos)
                    pos += _FRAME
                if last_use[src] == n:
                    os.close(handles.pop(src))
    finally:
        for fd in handles.values():
            os.close(fd)


def _copy_range(src: int, dst: int, src_offset: int, dst_offset: int, size: int) -> None:
    """Copy ``size`` bytes between open files, in the kernel where it can."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src, dst, size - done, src_offset + done, dst_offset + done)
        except OSError:  # e.g. across file systems on old kernels
            n = os.pwrite(dst, os.pread(src, size - done, src_offset + done), dst_offset + done)
        if n == 0:
            raise OSError(f"a tile ends past the end of its file (offset {src_offset})")
        done += n


def overview_ifd(template: Ifd, shape: tuple[int, int]) -> Ifd:
    """The IFD of an overview: ``template``'s layout tags at ``shape``, reduced-resolution.

    GeoTIFF tags, GDAL's metadata and strip tags are left out, as GDAL does.
    """
    tags = {
        t: v
        for t, v in template.tags.items()
        if t not in GEO_TAGS | STRIP_TAGS and t != GDAL_METADATA
    }
    tags[NEW_SUBFILE_TYPE] = (LONG, np.array([1], np.uint32))
    tags[IMAGE_WIDTH] = (LONG, np.array([shape[1]], np.uint32))
    tags[IMAGE_LENGTH] = (LONG, np.array([shape[0]], np.uint32))
    return Ifd(tags)


# ------------------------------------------------------------------ DEFLATE tiles


def _horizontal(samples: np.ndarray, stride: int) -> np.ndarray:
    """TIFF predictor 2: each sample of a row minus the one ``stride`` before (wrapping)."""
    out = np.empty_like(samples)
    out[:, :stride] = samples[:, :stride]
    np.subtract(samples[:, stride:], samples[:, :-stride], out=out[:, stride:])
    return out


def _floating_point(raw: np.ndarray, width: int, nbytes: int, stride: int) -> np.ndarray:
    """TIFF predictor 3 (libtiff's fpDiff): bytes of a row by significance, then differences.

    ``raw`` holds rows of ``width`` little-endian samples of ``nbytes`` bytes; the
    reordered bytes are then differenced as predictor 2 does, ``stride`` bytes apart.
    """
    rows = raw.shape[0]
    by_significance = raw.reshape(rows, width, nbytes)[:, :, ::-1].transpose(0, 2, 1)
    return _horizontal(by_significance.reshape(rows, nbytes * width), stride)


def can_encode(dtype: np.dtype, predictor: int) -> bool:
    """Whether :func:`encode_tiles` writes this dtype with this predictor."""
    if sys.byteorder != "little" or dtype.byteorder == ">":
        return False
    if predictor == 2:
        return dtype.kind in "iu"
    if predictor == 3:
        return dtype.kind == "f" and dtype.itemsize in (4, 8)
    return predictor == 1


def encode_tiles(data: np.ndarray, tile: int, predictor: int, level: int = 6) -> Iterator[bytes]:
    """DEFLATE tiles of ``data`` ``(band, y, x)``, row-major, as GDAL writes them in a GeoTIFF.

    Tiles are ``tile`` x ``tile`` pixels with the bands interleaved, padded with zeros
    at the right and bottom edges, filtered by TIFF ``predictor`` (1 none, 2 horizontal
    differences, 3 floating point) and compressed by libdeflate at ``level`` (GDAL's
    default 6), which releases the GIL.

    Examples
    --------
    >>> import zlib
    >>> data = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    >>> (only,) = encode_tiles(data, 16, predictor=2)
    >>> np.frombuffer(zlib.decompress(only), np.uint8).reshape(16, 16)[:2, :4]
    array([[  0,   1,   1, 254],
           [  3,   1,   1, 251]], dtype=uint8)
    """
    nbands, height, width = data.shape
    dtype = data.dtype.newbyteorder("<")
    buffer = np.zeros((tile, tile, nbands), dtype)
    rows = buffer.reshape(tile, tile * nbands)
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            part = data[:, y : y + tile, x : x + tile]
            if part.shape[1:] != (tile, tile):
                buffer[...] = 0
            buffer[: part.shape[1], : part.shape[2]] = part.transpose(1, 2, 0)
            if predictor == 3:
                raw = rows.view(np.uint8)
                payload = _floating_point(raw, tile * nbands, dtype.itemsize, nbands)
            elif predictor == 2:
                payload = _horizontal(rows.view(f"u{dtype.itemsize}"), nbands)
            else:
                payload = rows
            yield deflate.zlib_compress(memoryview(payload).cast("B"), level)
