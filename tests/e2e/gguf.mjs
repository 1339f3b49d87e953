// Reads and rewrites the metadata of a GGUF v2/v3 file without decoding its
// tensors, for tests that need a real model with hostile metadata.
//
// Layout (little-endian): magic "GGUF", u32 version, u64 tensor count, u64
// metadata count, the metadata key/value pairs, the tensor infos (name, u32
// n_dims, u64 dims, u32 type, u64 offset), padding to `general.alignment`
// (32 when absent), then the tensor data. Tensor offsets count from the start
// of the data section, so a new header padded to the same alignment keeps
// every offset valid.

const MAGIC = 'GGUF';
const DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types and the byte size of the fixed-size ones. */
export const GgufType = Object.freeze({
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
});

const FIXED_SIZES = new Map([
  [GgufType.UINT8, 1],
  [GgufType.INT8, 1],
  [GgufType.UINT16, 2],
  [GgufType.INT16, 2],
  [GgufType.UINT32, 4],
  [GgufType.INT32, 4],
  [GgufType.FLOAT32, 4],
  [GgufType.BOOL, 1],
  [GgufType.UINT64, 8],
  [GgufType.INT64, 8],
  [GgufType.FLOAT64, 8],
]);

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = 0;
  }

  ensure(length) {
    if (this.offset + length > this.bytes.length) {
      throw new Error(`GGUF header ends early: ${length} bytes needed at offset ${this.offset} of ${this.bytes.length}`);
    }
  }

  u32() {
    this.ensure(4);
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  u64() {
    this.ensure(8);
    const value = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Error(`GGUF length ${value} at offset ${this.offset - 8} is too large`);
    }
    return Number(value);
  }

  string() {
    const length = this.u64();
    this.ensure(length);
    const text = new TextDecoder('utf-8', { fatal: true }).decode(this.bytes.subarray(this.offset, this.offset + length));
    this.offset += length;
    return text;
  }

  /** Reads one value of `type`; returns it for strings and u32/u64 scalars, else undefined. */
  value(type) {
    if (type === GgufType.STRING) {
      return this.string();
    }
    if (type === GgufType.ARRAY) {
      const itemType = this.u32();
      const count = this.u64();
      const itemSize = FIXED_SIZES.get(itemType);
      if (itemSize !== undefined) {
        this.ensure(count * itemSize);
        this.offset += count * itemSize;
      } else {
        for (let i = 0; i < count; i += 1) {
          this.value(itemType);
        }
      }
      return undefined;
    }
    const size = FIXED_SIZES.get(type);
    if (size === undefined) {
      throw new Error(`unknown GGUF value type ${type} at offset ${this.offset}`);
    }
    this.ensure(size);
    let value;
    if (type === GgufType.UINT32) {
      value = this.view.getUint32(this.offset, true);
    } else if (type === GgufType.UINT64) {
      value = Number(this.view.getBigUint64(this.offset, true));
    }
    this.offset += size;
    return value;
  }
}

/**
 * Parses the header of a GGUF file. Returns {version, tensorCount, metadata,
 * tensorInfos, alignment, data}. `metadata` is a list of {key, type, raw,
 * value}, where `raw` contains the encoded value (after the key and type) and
 * `value` is set for strings and u32/u64 scalars. `tensorInfos` is the encoded
 * tensor info section and `data` the tensor data section.
 */
export function parseGguf(bytes) {
  const reader = new Reader(bytes);
  reader.ensure(4);
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  if (magic !== MAGIC) {
    throw new Error(`not a GGUF file: it starts with ${JSON.stringify(magic)}`);
  }
  reader.offset = 4;
  const version = reader.u32();
  if (version !== 2 && version !== 3) {
    throw new Error(`unsupported GGUF version ${version}; this reader handles versions 2 and 3`);
  }
  const tensorCount = reader.u64();
  const metadataCount = reader.u64();

  const metadata = [];
  for (let i = 0; i < metadataCount; i += 1) {
    const key = reader.string();
    const type = reader.u32();
    const start = reader.offset;
    const value = reader.value(type);
    metadata.push({ key, type, raw: bytes.subarray(start, reader.offset), value });
  }

  const tensorInfoStart = reader.offset;
  for (let i = 0; i < tensorCount; i += 1) {
    reader.string();
    const nDims = reader.u32();
    reader.ensure(nDims * 8 + 4 + 8);
    reader.offset += nDims * 8 + 4 + 8;
  }
  const tensorInfos = bytes.subarray(tensorInfoStart, reader.offset);

  const alignment = metadata.find((entry) => entry.key === 'general.alignment')?.value ?? DEFAULT_ALIGNMENT;
  const dataStart = alignUp(reader.offset, alignment);
  if (dataStart > bytes.length) {
    throw new Error(`GGUF data section starts at ${dataStart}, after the end of the file (${bytes.length} bytes)`);
  }
  return { version, tensorCount, metadata, tensorInfos, alignment, data: bytes.subarray(dataStart) };
}

/** Returns the value of a string metadata key, or undefined when the file has none. */
export function getString(gguf, key) {
  const entry = gguf.metadata.find((candidate) => candidate.key === key);
  if (entry === undefined) {
    return undefined;
  }
  if (entry.type !== GgufType.STRING) {
    throw new Error(`GGUF key ${key} has type ${entry.type}, not a string`);
  }
  return entry.value;
}

/**
 * Returns a copy of `gguf` with string metadata set: `strings` maps keys to
 * new values, replacing existing keys in place and appending new ones.
 */
export function withStrings(gguf, strings) {
  const metadata = gguf.metadata.map((entry) => ({ ...entry }));
  for (const [key, text] of Object.entries(strings)) {
    const entry = { key, type: GgufType.STRING, raw: encodeString(text), value: text };
    const index = metadata.findIndex((candidate) => candidate.key === key);
    if (index === -1) {
      metadata.push(entry);
    } else {
      metadata[index] = entry;
    }
  }
  return { ...gguf, metadata };
}

/** Encodes a parsed (and possibly edited) GGUF file back to bytes. */
export function writeGguf(gguf) {
  const parts = [Buffer.from(MAGIC), u32(gguf.version), u64(gguf.tensorCount), u64(gguf.metadata.length)];
  for (const entry of gguf.metadata) {
    parts.push(encodeString(entry.key), u32(entry.type), entry.raw);
  }
  parts.push(gguf.tensorInfos);
  const headerLength = parts.reduce((sum, part) => sum + part.length, 0);
  parts.push(Buffer.alloc(alignUp(headerLength, gguf.alignment) - headerLength));
  parts.push(gguf.data);
  return Buffer.concat(parts);
}

function alignUp(offset, alignment) {
  return Math.ceil(offset / alignment) * alignment;
}

function u32(value) {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

function u64(value) {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64LE(BigInt(value));
  return buffer;
}

function encodeString(text) {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([u64(bytes.length), bytes]);
}
