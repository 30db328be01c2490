// The size of a twin section as IoT Hub counts it against its limits (8 KB of tags, 32 KB of desired properties):
// UTF-8 length of every key, plus UTF-8 length of string values, 8 bytes a number, 4 a boolean, nested objects
// and arrays by their contents. Checking it at enrollment time turns a hub-side failure during every device's
// registration into one clear 400 for the operator.

export const TWIN_LIMITS = { tags: 8 * 1024, desired: 32 * 1024 } as const;

export function twinSize(value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number') return 8;
  if (typeof value === 'boolean') return 4;
  if (Array.isArray(value)) return value.reduce<number>((sum, item) => sum + twinSize(item), 0);
  if (typeof value === 'object' && value !== null) {
    let size = 0;
    for (const [key, item] of Object.entries(value)) size += Buffer.byteLength(key, 'utf8') + twinSize(item);
    return size;
  }
  return 0;
}
