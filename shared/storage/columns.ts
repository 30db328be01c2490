// Table Storage caps a string property at 64 KiB (32K UTF-16 code units) and an entity at 1 MiB. JSON that can
// outgrow one property (a device's payload, an enrollment's initial twin) is split across numbered columns:
// `doc`, `doc1`, `doc2`, … and joined again on read.

const CHUNK = 32_000;

export function splitColumn(name: string, text: string): Record<string, string> {
  const columns: Record<string, string> = {};
  let start = 0;
  for (let i = 0; i === 0 || start < text.length; i++) {
    let end = Math.min(start + CHUNK, text.length);
    // Never split a surrogate pair: half a character is not a valid string for the service.
    if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end--;
    columns[i === 0 ? name : `${name}${i}`] = text.slice(start, end);
    start = end;
  }
  return columns;
}

export function joinColumn(row: Record<string, unknown>, name: string): string {
  let text = typeof row[name] === 'string' ? row[name] : '';
  for (let i = 1; typeof row[`${name}${i}`] === 'string'; i++) text += row[`${name}${i}`] as string;
  return text;
}

const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;
