// Starts the dev stack inside a test worker against the suite's shared Azurite and dev CA, with its own tables.
import { randomBytes } from 'node:crypto';

import { inject } from 'vitest';

import type { Stack, StackOptions } from '../../dev/stack';
import { startStack } from '../../dev/stack';

export function startTestStack(options: Omit<StackOptions, 'certs' | 'tablesConnectionString'> = {}): Promise<Stack> {
  return startStack({
    ...options,
    certs: inject('certs'),
    tablesConnectionString: inject('tablesConnectionString'),
    settings: {
      DPS_TABLE_PREFIX: `t${randomBytes(4).toString('hex')}`,
      DPS_RETRY_AFTER_SECONDS: '0',
      DPS_EVENTS_CONSOLE: 'false',
      DPS_EVENTS_FILE: '',
      ...options.settings,
    },
  });
}
