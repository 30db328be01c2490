// Registration ID rules (reference/dps-protocol.md §1.3): case-insensitive, ≤128 chars, alphanumerics and - . _ :,
// starting with an alphanumeric and ending with an alphanumeric or '-'.
import { badRequest } from '../errors';

const PATTERN = /^[a-z0-9](?:[a-z0-9._:-]{0,126}[a-z0-9-])?$/i;

export function isValidRegistrationId(id: string): boolean {
  return PATTERN.test(id);
}

export function assertRegistrationId(id: string, field = 'registrationId'): string {
  if (!isValidRegistrationId(id)) {
    throw badRequest(
      `${field} '${id.slice(0, 140)}' is invalid: use 1-128 characters from a-z, 0-9, '-', '.', '_', ':'; ` +
        `start with a letter or digit and end with a letter, digit or '-'.`,
      2,
    );
  }
  return id;
}

/** The storage key of a registration ID: DPS treats registration IDs case-insensitively. */
export const registrationKey = (id: string): string => id.toLowerCase();
