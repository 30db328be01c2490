// `npm start`: the whole local stack with a banner that says how to use it.
import { createHmac, randomBytes } from 'node:crypto';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';

import { loadOrCreateDevSettings, startStack } from './stack';

const HELP = `Usage: npm start -- [options]
  --port <n>          dev host HTTPS port (default 8443)
  --hub-port <n>      first IoT hub emulator port (default 8444)
  --hubs <n>          number of hub emulators to link (default 1)
  --azurite-port <n>  embedded Azurite Table port (default 10002; what UseDevelopmentStorage=true expects)
  --persist           keep tables in .azurite/ and hub registries in .dev/hubs/ across restarts
  --quiet             no access log
  --help`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8443' },
      'hub-port': { type: 'string', default: '8444' },
      hubs: { type: 'string', default: '1' },
      'azurite-port': { type: 'string', default: '10002' },
      persist: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const number = (name: string, value: string): number => {
    if (!/^\d+$/.test(value)) throw new Error(`--${name} must be a whole number, not '${value}'`);
    return Number(value);
  };
  const stateDir = join(process.cwd(), '.dev');
  const stack = await startStack({
    stateDir,
    port: number('port', values.port),
    azurite: {
      port: number('azurite-port', values['azurite-port']),
      ...(values.persist ? { location: join(process.cwd(), '.azurite') } : {}),
    },
    hubs: {
      count: number('hubs', values.hubs),
      port: number('hub-port', values['hub-port']),
      ...(values.persist ? { persistDir: join(stateDir, 'hubs') } : {}),
    },
    settings: loadOrCreateDevSettings(stateDir),
    ...(values.quiet
      ? {}
      : {
          onRequest: (r: { method: string; path: string; status: number; ms: number }) =>
            console.log(`${new Date().toISOString()} ${r.method} ${r.path} → ${r.status} (${r.ms.toFixed(1)} ms)`),
        }),
  });

  // A demo group so a device can register right away; more come through the service API (see the banner).
  const demo = await stack.services.groups.get('demo-group');
  let groupKey = demo?.value.attestation.symmetricKey?.primaryKey;
  if (!groupKey) {
    groupKey = randomBytes(64).toString('base64');
    await stack.services.groups.save({
      enrollmentGroupId: 'demo-group',
      attestation: {
        type: 'symmetricKey',
        symmetricKey: { primaryKey: groupKey, secondaryKey: randomBytes(64).toString('base64') },
      },
      initialTwin: { tags: { source: 'open-dps-demo' }, properties: { desired: { telemetryInterval: 30 } } },
    });
    stack.services.invalidateCaches();
  }
  const deviceKey = createHmac('sha256', Buffer.from(groupKey, 'base64')).update('demo-device-1').digest('base64');
  const ca = relative(process.cwd(), stack.certs.caCert);
  const hubLines = stack.hubs
    .map((h, i) => `    ${h.hostName}  location ${stack.hubLocations[i] ?? '?'}\n      ${h.connectionString}`)
    .join('\n');
  const run = `NODE_EXTRA_CA_CERTS=${ca} node -r ./dev/hostPortShim.cjs`;

  console.log(`
Open DPS is running (local development stack)

  Global device endpoint   ${stack.deviceEndpoint}
  ID scope                 ${stack.idScope}
  Linked IoT hub(s)        ${stack.hubs.length}${values.persist ? ' (registries and keys kept in .dev/hubs/)' : ''}
${hubLines}
  Table Storage            ${stack.tablesConnectionString.replace(/AccountKey=[^;]+/, 'AccountKey=<azurite well-known key>')}
  Dev CA certificate       ${ca}   (trust it with NODE_EXTRA_CA_CERTS)
  Service connection       ${stack.serviceConnectionString}
  Demo enrollment group    demo-group (symmetric key)

Register a device with the official device SDK (in another terminal):

  ${run} dev/exampleDevice.cjs \\
    ${stack.deviceEndpoint} ${stack.idScope} demo-device-1 --device-key ${deviceKey}

Enroll a device with the official service SDK, then register it with the key it prints:

  ${run} dev/exampleEnroll.cjs \\
    "${stack.serviceConnectionString}" individual my-device-1
  ${run} dev/exampleDevice.cjs ${stack.deviceEndpoint} ${stack.idScope} my-device-1 --device-key <printed key>

Press Ctrl+C to stop.
`);

  const shutdown = () => {
    console.log('stopping…');
    stack.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`stop failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((err: unknown) => {
  console.error(`npm start failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
