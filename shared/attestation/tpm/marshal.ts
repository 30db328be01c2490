// TPM 2.0 wire marshalling: big-endian integers and TPM2B (UINT16 size ‖ bytes) fields, reading and writing.

/** Thrown by TpmReader on malformed input; the message says what was wrong at which offset. */
export class TpmFormatError extends Error {}

/** Reads TPM structures front to back; every read checks that the bytes are there. */
export class TpmReader {
  private offset = 0;

  constructor(private readonly bytes: Buffer) {}

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  get position(): number {
    return this.offset;
  }

  u16(): number {
    return this.take(2).readUInt16BE(0);
  }

  u32(): number {
    return this.take(4).readUInt32BE(0);
  }

  /** A TPM2B: UINT16 size, then that many bytes. */
  tpm2b(): Buffer {
    return this.take(this.u16());
  }

  take(length: number): Buffer {
    if (length > this.remaining) {
      throw new TpmFormatError(`truncated: ${length} bytes needed at offset ${this.offset}, ${this.remaining} left`);
    }
    const slice = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return slice;
  }
}

export const u16 = (value: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  return b;
};

export const u32 = (value: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
};

/** TPM2B(bytes) = UINT16 size ‖ bytes. */
export const tpm2b = (bytes: Buffer): Buffer => Buffer.concat([u16(bytes.length), bytes]);
