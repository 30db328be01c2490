// The DpsError a call throws or a promise rejects with, so tests can assert its status, code and message.
import { expect } from 'vitest';

import { DpsError } from '../../shared/errors';

export function dpsErrorFrom(fn: () => unknown): DpsError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(DpsError);
  return thrown as DpsError;
}

export async function dpsErrorOf(promise: Promise<unknown>): Promise<DpsError> {
  let thrown: unknown;
  try {
    await promise;
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(DpsError);
  return thrown as DpsError;
}

/** Throws DPS's 401 "unauthorized" (errorCode 401002). */
export function expect401(fn: () => unknown): void {
  expect(dpsErrorFrom(fn)).toMatchObject({ status: 401, errorCode: 401002 });
}
