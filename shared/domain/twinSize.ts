// The size of a twin section as IoT Hub counts it against its limits (8 KB of tags, 32 KB of desired properties):
// UTF-8 length of every key, plus UTF-8 length of string values, both without Unicode control characters (C0, C1),
// 8 bytes a number, 4 a boolean, nested objects and arrays by their contents. Checking it at enrollment time turns a hub-side failure during every device's
// registration into one clear 400 for the operator.

export const TWIN_LIMITS = { tags: 8 * 1024, desired: 32 * 1024 } as const;

export function twinSize(value: unknown): number {
  if (typeof value === 'string') return utf8Size(value);
  if (typeof value === 'number') return 8;
  if (typeof value === 'boolean') return 4;
  if (Array.isArray(value)) return value.reduce<number>((sum, item) => sum + twinSize(item), 0);
  if (typeof value === 'object' && value !== null) {
    let size = 0;
    for (const [key, item] of Object.entries(value)) size += utf8Size(key) + twinSize(item);
    return size;
  }
  return 0;
}

// eslint-disable-next-line no-control-regex -- the control characters are exactly what IoT Hub leaves out
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

const utf8Size = (text: string): number => Buffer.byteLength(text.replace(CONTROL, ''), 'utf8');

/**
 * IoT Hub allows objects nested 10 levels below `tags` or `properties.desired` (its docs' valid example nests
 * `one` … `ten` directly under `tags`). Arrays count as levels too, as in the dev hub emulator.
 */
export const TWIN_MAX_DEPTH = 10;

/** How many levels of objects or arrays nest below `section` (0 for a flat one). Iterative: no stack to overflow. */
export function twinDepth(section: object): number {
  let deepest = 0;
  const pending: [unknown, number][] = Object.values(section).map((v) => [v, 1]);
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [value, depth] = next;
    if (typeof value !== 'object' || value === null) continue;
    deepest = Math.max(deepest, depth);
    for (const child of Object.values(value)) pending.push([child, depth + 1]);
  }
  return deepest;
}
