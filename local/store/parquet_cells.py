"""A Parquet writer for rows whose cells are too big to copy: each cell goes from its own buffer to the file.

pyarrow's ParquetWriter holds two copies of a binary cell while it writes it (the PLAIN encoder's buffer and
the page it assembles), three with compression: measured in its memory pool, 2.00x the cell uncompressed,
3.00x with zstd (a 28.8 MB cell, pyarrow 25). For a 2-hour track's codes that is a few hundred MB on top of
the codes themselves. This writer emits the same file format (Parquet 1.0 data pages, PLAIN values, RLE
definition levels, no compression, one row per row group, the Arrow schema in the footer so pyarrow reads the
very same types and key-value metadata back) with the cells written straight from their buffers: memory for
the page headers only.

Only what the dataset needs: flat schemas of nullable string, binary, int32 and int64 fields, no nulls.
"""
import struct

import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b"PAR1"
CREATED_BY = "waveforms version 1.0.0 (build parquet_cells)"  # "<name> version <x.y.z> (build <b>)", as readers parse it
# Thrift compact protocol field types, Parquet enums (parquet.thrift)
I16, I32, I64, BINARY, LIST, STRUCT = 4, 5, 6, 8, 9, 12
BOOLEAN_TYPE, INT32_TYPE, INT64_TYPE, BYTE_ARRAY_TYPE = 0, 1, 2, 6
REQUIRED, OPTIONAL = 0, 1
UTF8_CONVERTED = 0
PLAIN, RLE = 0, 3
UNCOMPRESSED = 0
DATA_PAGE = 0
# the definition levels of one defined value of a nullable column: 4-byte length, then an RLE run of one 1
ONE_DEFINED_VALUE_LEVELS = struct.pack("<I", 2) + bytes([1 << 1, 1])


def _varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int(n):
    """A Thrift compact i16/i32/i64: zigzag, then varint."""
    return _varint((n << 1) ^ (n >> 63))


def _binary(value):
    value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return _varint(len(value)) + value


def _list(element_type, encoded_items):
    size = len(encoded_items)
    header = bytes([size << 4 | element_type]) if size < 15 else bytes([0xF0 | element_type]) + _varint(size)
    return header + b"".join(encoded_items)


def _struct(*fields):
    """A Thrift compact struct from (field id, type, encoded value) in increasing id order; None values skipped."""
    out, last_id = bytearray(), 0
    for field_id, field_type, value in fields:
        if value is None:
            continue
        delta = field_id - last_id
        out += bytes([delta << 4 | field_type]) if 0 < delta <= 15 else bytes([field_type]) + _int(field_id)
        out += value
        last_id = field_id
    return bytes(out + b"\x00")


PHYSICAL = {pa.string(): BYTE_ARRAY_TYPE, pa.binary(): BYTE_ARRAY_TYPE, pa.int32(): INT32_TYPE,
            pa.int64(): INT64_TYPE}


def _schema_element(field):
    if field.type not in PHYSICAL:
        raise TypeError(f"parquet_cells writes string, binary, int32 and int64 fields, not {field.type} ({field.name})")
    is_string = field.type == pa.string()
    return _struct((1, I32, _int(PHYSICAL[field.type])), (3, I32, _int(OPTIONAL if field.nullable else REQUIRED)),
                   (4, BINARY, _binary(field.name)), (6, I32, _int(UTF8_CONVERTED) if is_string else None),
                   (10, STRUCT, _struct((1, STRUCT, _struct())) if is_string else None))  # LogicalType STRING


def _plain_prefix(field_type, value):
    """The PLAIN encoding of one value, less the bytes of a binary/string cell (written from its own buffer):
    (prefix bytes, the cell's buffer or None)."""
    if field_type == pa.int32():
        return struct.pack("<i", int(value)), None
    if field_type == pa.int64():
        return struct.pack("<q", int(value)), None
    cell = memoryview(value.encode("utf-8") if isinstance(value, str) else value).cast("B")
    return struct.pack("<I", cell.nbytes), cell


def wrote(metadata):
    """True when this writer wrote the Parquet file of ``metadata`` (a pq.FileMetaData)."""
    return metadata.created_by == CREATED_BY


def arrow_footer_metadata(schema):
    """The key-value metadata pyarrow writes for ``schema`` (``ARROW:schema`` and the schema's own), so that
    pyarrow reads this writer's files back with the very same schema."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, schema).close()
    return dict(pq.read_metadata(pa.BufferReader(sink.getvalue())).metadata)


class CellParquetWriter:
    """Write rows to the Parquet file ``path``, each row its own row group, each cell copied to the file from
    its own buffer (bytes, bytearray, a uint8 numpy array...; never joined into a page in memory).

    ``schema``: a pa.Schema of string, binary, int32 and int64 fields (its key-value metadata kept). Use it as
    a context manager or call :meth:`close`, which writes the footer; a file without one is no Parquet file.
    """

    def __init__(self, path, schema):
        for field in schema:
            _schema_element(field)  # raises TypeError for a type it does not write
        self.schema = schema
        self.file = open(path, "wb")
        self.file.write(MAGIC)
        self.offset, self.row_groups, self.rows = len(MAGIC), [], 0

    def _write(self, piece):
        self.file.write(piece)
        self.offset += memoryview(piece).nbytes

    def write_row(self, row):
        """Append one row (a dict with every field of the schema, no None) as its own row group."""
        chunks, group_start, group_bytes = [], self.offset, 0
        for field in self.schema:
            if row[field.name] is None:
                raise ValueError(f"parquet_cells writes no nulls ({field.name} is None)")
            levels = ONE_DEFINED_VALUE_LEVELS if field.nullable else b""
            prefix, cell = _plain_prefix(field.type, row[field.name])
            page_bytes = len(levels) + len(prefix) + (cell.nbytes if cell is not None else 0)
            header = _struct((1, I32, _int(DATA_PAGE)), (2, I32, _int(page_bytes)), (3, I32, _int(page_bytes)),
                             (5, STRUCT, _struct((1, I32, _int(1)), (2, I32, _int(PLAIN)), (3, I32, _int(RLE)),
                                                 (4, I32, _int(RLE)))))
            page_offset = self.offset
            self._write(header + levels + prefix)
            if cell is not None:
                self._write(cell)  # straight from the cell's buffer
            chunk_bytes = self.offset - page_offset
            group_bytes += chunk_bytes
            meta = _struct((1, I32, _int(PHYSICAL[field.type])), (2, LIST, _list(I32, [_int(PLAIN), _int(RLE)])),
                           (3, LIST, _list(BINARY, [_binary(field.name)])), (4, I32, _int(UNCOMPRESSED)),
                           (5, I64, _int(1)), (6, I64, _int(chunk_bytes)), (7, I64, _int(chunk_bytes)),
                           (9, I64, _int(page_offset)))
            chunks.append(_struct((2, I64, _int(page_offset)), (3, STRUCT, meta)))
        self.row_groups.append(_struct(
            (1, LIST, _list(STRUCT, chunks)), (2, I64, _int(group_bytes)), (3, I64, _int(1)),
            (5, I64, _int(group_start)), (6, I64, _int(group_bytes)), (7, I16, _int(len(self.row_groups)))))
        self.rows += 1

    def close(self):
        """Write the footer and close the file (a no-op when already closed)."""
        if self.file.closed:
            return
        root = _struct((3, I32, _int(REQUIRED)), (4, BINARY, _binary("schema")),
                       (5, I32, _int(len(self.schema))))
        key_values = [_struct((1, BINARY, _binary(k)), (2, BINARY, _binary(v)))
                      for k, v in arrow_footer_metadata(self.schema).items()]
        footer = _struct((1, I32, _int(1)),
                         (2, LIST, _list(STRUCT, [root] + [_schema_element(f) for f in self.schema])),
                         (3, I64, _int(self.rows)), (4, LIST, _list(STRUCT, self.row_groups)),
                         (5, LIST, _list(STRUCT, key_values)), (6, BINARY, _binary(CREATED_BY)))
        self._write(footer + struct.pack("<I", len(footer)) + MAGIC)
        self.file.close()

    def discard(self):
        """Close the file without a footer (the caller deletes it)."""
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is None:
            self.close()
        else:
            self.discard()
