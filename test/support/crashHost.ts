// The crash test's host process: the dev stack (StackOptions as JSON in CRASH_STACK), a READY line once it serves.
// Transpiled with the sources and run as a child, so the test can SIGKILL it (DPS_TEST_CRASH_AFTER) and start it again.
import type { StackOptions } from '../../dev/stack';
import { startStack } from '../../dev/stack';

const options = JSON.parse(process.env.CRASH_STACK ?? '{}') as StackOptions;
startStack(options).then(
  (stack) => console.log(`READY ${JSON.stringify({ deviceEndpoint: stack.deviceEndpoint, idScope: stack.idScope })}`),
  (err: unknown) => {
    console.error(String(err));
    process.exit(1);
  },
);
