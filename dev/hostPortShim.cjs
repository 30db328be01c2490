// Test-only preload: lets the official Azure IoT SDKs reach a local port. Their HTTP transports pass the host name
// to https.request({ host }) and never set a port (HTTPS on 443 is hard-coded), so 'localhost:8443' fails with
// ENOTFOUND. This splits 'host:port' before the request is made. Use: node -r ./dev/hostPortShim.cjs app.js
// (reference/official-clients.md §6, recipe a). Not needed against a real DPS or a server on port 443.
'use strict';
const https = require('node:https');

const original = https.request;
https.request = function request(options, ...rest) {
  if (
    options &&
    typeof options === 'object' &&
    !(options instanceof URL) &&
    typeof options.host === 'string' &&
    !options.port
  ) {
    const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(options.host);
    if (match) options = { ...options, host: match[1] || match[2], port: Number(match[3]) };
  }
  return original.call(this, options, ...rest);
};
