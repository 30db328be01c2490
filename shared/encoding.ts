// Text encodings the service checks in several places: URL components and base64.

/** Standard base64 (RFC 4648 §4) with optional padding; the length is not checked. */
export const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** `decodeURIComponent`, or undefined for a malformed escape such as `%zz`. */
export function safeDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}
