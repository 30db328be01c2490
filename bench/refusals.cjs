// Refused-registration burst: how many best-effort attestationFailed events survive a flood of 401s.
// `npm run bench:refusals -- [count]` (default 20000): a dev stack with the local events file, `count` register PUTs
// signed with a wrong key at concurrency 64, then the events file is counted per device.
const { createHmac } = require('node:crypto');
const { mkdtempSync, readFileSync, existsSync, rmSync } = require('node:fs');
const https = require('node:https');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const { startStack } = require(join(__dirname, '..', 'dist', 'dev', 'stack.js'));

async function main() {
  const count = Number(process.argv[2] ?? 20000);
  const concurrency = 64;
  const dir = mkdtempSync(join(tmpdir(), 'opendps-refusals-'));
  const file = join(dir, 'events.jsonl');
  const stack = await startStack({
    stateDir: dir,
    settings: { DPS_EVENTS_FILE: file, DPS_EVENTS_CONSOLE: 'false' },
  });
  const agent = new https.Agent({ keepAlive: true, ca: readFileSync(join(dir, 'certs', 'ca.pem')) });
  const [host, port] = stack.deviceEndpoint.split(':');
  const se = Math.floor(Date.now() / 1000) + 3600;
  const statuses = {};
  const refuse = (id) =>
    new Promise((resolve) => {
      const sr = encodeURIComponent(`${stack.idScope}/registrations/${id}`);
      const sig = encodeURIComponent(createHmac('sha256', Buffer.alloc(32, 7)).update(`${sr}\n${se}`).digest('base64'));
      const req = https.request(
        {
          host,
          port,
          agent,
          method: 'PUT',
          path: `/${stack.idScope}/registrations/${id}/register?api-version=2021-06-01`,
          headers: {
            'content-type': 'application/json',
            authorization: `SharedAccessSignature sr=${sr}&sig=${sig}&se=${se}&skn=registration`,
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
            resolve();
          });
        },
      );
      req.on('error', () => {
        statuses.error = (statuses.error ?? 0) + 1;
        resolve();
      });
      req.end(JSON.stringify({ registrationId: id }));
    });
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await refuse(`refused-${next++}`);
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  await stack.stop(); // drains the event queue
  const events = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"opendps.registration.attestationFailed"'))
        .map((l) => JSON.parse(l).subject)
    : [];
  const devices = new Set(events).size;
  console.log(
    `${count} refused registrations at concurrency ${concurrency} in ${seconds.toFixed(1)} s ` +
      `(${Math.round(count / seconds)}/s; answers ${JSON.stringify(statuses)}): ` +
      `${events.length} attestationFailed events for ${devices} devices, ${count - devices} lost`,
  );
  rmSync(dir, { recursive: true, force: true });
  return count === devices ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
