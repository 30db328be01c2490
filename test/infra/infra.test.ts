// The azd + Bicep deployment, checked offline: every .bicep file parses (tree-sitter-bicep), and the pieces agree with
// each other and with the code — parameters, role IDs, the settings shared/config.ts reads, the hook's inputs,
// azure.yaml, .funcignore. Real validation (`az bicep build`, `azd provision --preview`) needs Azure: see README.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import { describe, expect, it } from 'vitest';
import type { Node } from 'web-tree-sitter';

import { loadConfig } from '../../shared/config';
import { declarations, declaredName, objectProperties, parseBicep, resources, syntaxProblems } from '../support/bicep';

const ROOT = join(__dirname, '..', '..');
const INFRA = join(ROOT, 'infra');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

function filesUnder(dir: string, skip: (rel: string) => boolean = () => false): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const rel = relative(ROOT, path).split('\\').join('/');
    if (skip(rel)) continue;
    if (statSync(path).isDirectory()) out.push(...filesUnder(path, skip));
    else out.push(rel);
  }
  return out;
}
const bicepFiles = filesUnder(INFRA).filter((f) => f.endsWith('.bicep'));

/** Built-in role definition IDs (reference B7; Azure built-in roles table). Nothing else may be assigned. */
const KNOWN_ROLES: Record<string, string> = {
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b': 'Storage Blob Data Owner',
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88': 'Storage Queue Data Contributor',
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3': 'Storage Table Data Contributor',
  '3913510d-42f4-4e42-8a64-420c390055eb': 'Monitoring Metrics Publisher',
  '00482a5a-887f-4fb3-b363-3b7fe8e74483': 'Key Vault Administrator',
  'b86a8fe4-44ce-4948-aee5-eccb2c155cd7': 'Key Vault Secrets Officer',
  '4633458b-17de-408a-b874-0445c86b69e6': 'Key Vault Secrets User',
  'a4417e6f-fecd-4de8-b567-7b0420556985': 'Key Vault Certificates Officer',
  'db79e9a7-68ee-4b58-9aeb-b90e7c24fcba': 'Key Vault Certificate User',
  '14b46e9e-c2b7-41b4-b07b-48a6ebf60603': 'Key Vault Crypto Officer',
  '12338af0-0e69-4776-bea7-57ae8d297424': 'Key Vault Crypto User',
  '21090545-7ca7-4776-b22c-e363652d74d2': 'Key Vault Reader',
  '2b629674-e913-4c01-ae53-ef4638d8f975': 'Azure Event Hubs Data Sender',
  'a638d3c7-ab3a-418d-83e6-5f17a39d4fde': 'Azure Event Hubs Data Receiver',
  'f526a384-b230-433a-b45c-95f59c4a2dec': 'Azure Event Hubs Data Owner',
};
const GUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/**
 * The settings a source file reads: `env.X`, `env['X']`, `process.env.X`, and helper calls `fn(env, 'X', …)`
 * (`required`, `integer`, `matching`, …).
 */
export function settingsReadBy(source: string): Set<string> {
  const names = new Set<string>();
  const patterns = [
    /\benv\??\.([A-Za-z_][A-Za-z0-9_]*)/g,
    /\benv\??\.?\[\s*['"`]([A-Za-z_][A-Za-z0-9_]*)['"`]\s*\]/g,
    /\(\s*env\s*,\s*['"`]([A-Za-z_][A-Za-z0-9_]*)['"`]/g,
  ];
  for (const pattern of patterns) for (const m of source.matchAll(pattern)) if (m[1]) names.add(m[1]);
  return names;
}

/** The configuration table of the README: setting → its "required" cell. */
function readmeSettings(): Map<string, string> {
  const readme = read('README.md');
  const section = readme.slice(readme.indexOf('\n## Configuration'));
  const body = section.slice(0, section.indexOf('\n## ', 5));
  const rows = new Map<string, string>();
  for (const m of body.matchAll(/^\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|\s*([^|]*?)\s*\|/gm)) {
    if (m[1]) rows.set(m[1], m[2] ?? '');
  }
  return rows;
}

async function bicep(path: string) {
  const source = read(path);
  return { source, tree: await parseBicep(source) };
}

describe('Bicep syntax (tree-sitter-bicep)', () => {
  it('finds the templates', () => {
    expect(bicepFiles).toContain('infra/main.bicep');
    expect(bicepFiles.length).toBeGreaterThanOrEqual(5);
  });

  it.each(bicepFiles)('%s parses without errors', async (file) => {
    const { source, tree } = await bicep(file);
    const problems = syntaxProblems(tree, source).map((p) => `${file}:${p.line}:${p.column} ${p.message}`);
    expect(problems).toEqual([]);
  });

  it('reports a truncated or broken file with its line', async () => {
    const source = read('infra/main.bicep');
    const cut = source.slice(0, source.indexOf("module storage 'core/storage.bicep'") + 60);
    const truncated = syntaxProblems(await parseBicep(cut), cut);
    expect(truncated.length).toBeGreaterThan(0);
    const lastLine = cut.split('\n').length;
    expect(truncated.some((p) => p.line >= lastLine - 3)).toBe(true);

    const broken =
      "param a string\nresource x 'A/b@1' = {\n  name: 'x'\n  properties: {{ oops\n}\noutput o string = x.id\n";
    const problems = syntaxProblems(await parseBicep(broken), broken);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]?.line).toBeGreaterThanOrEqual(2);
    expect(problems[0]?.message).toMatch(/unexpected input|missing/);
  });
});

describe('deployment consistency', () => {
  it('main.parameters.json sets only params of main.bicep, and every param without a default', async () => {
    const { tree } = await bicep('infra/main.bicep');
    const params = declarations(tree, 'parameter_declaration');
    const names = params.map(declaredName);
    const file = JSON.parse(read('infra/main.parameters.json')) as { parameters: Record<string, unknown> };
    const keys = Object.keys(file.parameters);
    expect(keys.filter((k) => !names.includes(k))).toEqual([]);
    const withoutDefault = params.filter((p) => !p.text.includes('=')).map(declaredName);
    expect(withoutDefault.filter((n) => !keys.includes(n))).toEqual([]);
    expect(keys).toEqual(expect.arrayContaining(['environmentName', 'location', 'principalId']));
    JSON.parse(read('infra/abbreviations.json'));
  });

  it('every table the code opens is created by the template (names, default prefix)', () => {
    const code = read('shared/storage/tables.ts');
    const used = [...code.matchAll(/\bclient\('([A-Za-z0-9]+)'\)/g)].map((m) => m[1] ?? '');
    // The extraction itself must work, or this test would pass on nothing.
    expect(used).toEqual(expect.arrayContaining(['Devices', 'Groups', 'Config', 'Outbox']));
    const main = read('infra/main.bicep');
    const tableNames = /tableNames: \[([^\]]*)\]/.exec(main)?.[1] ?? '';
    const created = [...tableNames.matchAll(/'\$\{tablePrefix\}([A-Za-z0-9]+)'/g)].map((m) => m[1] ?? '');
    expect(created.sort()).toEqual([...used].sort());
    // The template's default prefix is the code's, so a setting left out still names the created tables.
    expect(main).toMatch(/^param tablePrefix string = 'dps'$/m);
    expect(read('shared/config.ts')).toMatch(/'DPS_TABLE_PREFIX', 'dps'/);
  });

  it('every module call passes only params of its module, and every param without a default', async () => {
    let calls = 0;
    for (const file of bicepFiles) {
      const { tree } = await bicep(file);
      for (const m of declarations(tree, 'module_declaration')) {
        calls++;
        const path = m.namedChildren.find((c) => c.type === 'string')?.text.slice(1, -1) ?? '';
        const target = relative(ROOT, join(ROOT, file, '..', path))
          .split('\\')
          .join('/');
        const body = m.namedChildren.find((c) => c.type === 'object');
        const paramsNode = body && objectProperties(body).get('params');
        const passed = paramsNode ? [...objectProperties(paramsNode).keys()] : [];
        const params = declarations((await bicep(target)).tree, 'parameter_declaration');
        const declared = params.map(declaredName);
        const required = params.filter((p) => !p.text.includes('=')).map(declaredName);
        expect(
          passed.filter((p) => !declared.includes(p)),
          `${file} → ${target}: unknown params`,
        ).toEqual([]);
        expect(
          required.filter((p) => !passed.includes(p)),
          `${file} → ${target}: params not passed`,
        ).toEqual([]);
      }
    }
    expect(calls).toBeGreaterThanOrEqual(7);
  });

  it('every param of every template is used', async () => {
    for (const file of bicepFiles) {
      const { tree } = await bicep(file);
      const declared = declarations(tree, 'parameter_declaration');
      const used = new Set<string>();
      const visit = (node: Node): void => {
        if (node.type === 'identifier' && node.parent?.type !== 'parameter_declaration') used.add(node.text);
        for (const child of node.namedChildren) if (child) visit(child);
      };
      for (const top of tree.rootNode.namedChildren) if (top && top.type !== 'parameter_declaration') visit(top);
      expect(
        declared.map(declaredName).filter((n) => !used.has(n)),
        `${file}: unused params`,
      ).toEqual([]);
    }
  });

  it('every role assignment names a known built-in role and a principalType; nothing broader is granted', async () => {
    let assignments = 0;
    for (const file of bicepFiles) {
      const { source, tree } = await bicep(file);
      for (const guid of source.match(GUID) ?? []) {
        expect(KNOWN_ROLES[guid.toLowerCase()], `${file}: unknown role ID ${guid}`).toBeDefined();
      }
      const roleVars = new Map<string, string>();
      for (const v of declarations(tree, 'variable_declaration')) {
        const object = v.namedChildren.find((c) => c.type === 'object');
        if (object) for (const [k, val] of objectProperties(object)) roleVars.set(`${declaredName(v)}.${k}`, val.text);
      }
      for (const r of resources(tree).filter((x) => x.type.startsWith('Microsoft.Authorization/roleAssignments@'))) {
        assignments++;
        const props = r.body ? objectProperties(r.body).get('properties') : undefined;
        expect(props, `${file}: ${r.name} has no properties`).toBeDefined();
        const p = props ? objectProperties(props) : new Map<string, Node>();
        expect(p.has('principalType'), `${file}: ${r.name} lacks principalType`).toBe(true);
        expect(p.has('principalId'), `${file}: ${r.name} lacks principalId`).toBe(true);
        const roleText = p.get('roleDefinitionId')?.text ?? '';
        const ref = /\b([A-Za-z_]\w*\.[A-Za-z_]\w*)\s*\)\s*$/.exec(roleText)?.[1];
        const id = (roleText.match(GUID) ?? [])[0] ?? (ref ? roleVars.get(ref)?.replace(/'/g, '') : undefined);
        expect(id && KNOWN_ROLES[id.toLowerCase()], `${file}: ${r.name} role ${roleText}`).toBeTruthy();
      }
    }
    expect(assignments).toBeGreaterThanOrEqual(6);
  });

  it('the app identity gets exactly the data-plane roles it uses (least privilege)', async () => {
    const { tree } = await bicep('infra/app/rbac.bicep');
    const granted = resources(tree)
      .filter((r) => r.type.startsWith('Microsoft.Authorization/roleAssignments@'))
      .map((r) => {
        const p = objectProperties(objectProperties(r.body ?? tree.rootNode).get('properties') ?? tree.rootNode);
        return {
          principal: p.get('principalId')?.text,
          role: /roles\.(\w+)/.exec(p.get('roleDefinitionId')?.text ?? '')?.[1],
        };
      });
    expect(
      granted
        .filter((g) => g.principal === 'appPrincipalId')
        .map((g) => g.role)
        .sort(),
    ).toEqual([
      'eventHubsDataSender',
      'keyVaultCryptoUser',
      'keyVaultSecretsUser',
      'monitoringMetricsPublisher',
      'storageBlobDataOwner',
      'storageTableDataContributor',
    ]);
    expect(granted.filter((g) => g.principal === 'userPrincipalId').map((g) => g.role)).toEqual([
      'keyVaultSecretsOfficer',
    ]);
  });

  it('every setting the code reads is set by the Bicep or documented as optional in the README', async () => {
    const sources = ['shared', 'functions']
      .flatMap((d) => filesUnder(join(ROOT, d)))
      .filter((f) => f.endsWith('.ts'))
      .map(read)
      .join('\n');
    const read_ = settingsReadBy(sources);
    // The extraction itself must work, or this test would pass on nothing.
    expect([...read_]).toEqual(expect.arrayContaining(['DPS_ID_SCOPE', 'DPS_MASTER_KEY', 'DPS_REGISTER_BUDGET_MS']));

    const { tree } = await bicep('infra/app/api.bicep');
    const settingsResource = resources(tree).find((r) => r.type.startsWith('Microsoft.Web/sites/config@'));
    const props = settingsResource?.body && objectProperties(settingsResource.body).get('properties');
    expect(props).toBeDefined();
    const set = new Set(props ? objectProperties(props).keys() : []);
    const readme = readmeSettings();
    expect(readme.size).toBeGreaterThan(5);

    const uncovered = [...read_].filter((name) => {
      if (set.has(name)) return false;
      const required = readme.get(name);
      return required === undefined || /^yes$/i.test(required.trim());
    });
    expect(uncovered, 'read by the code, neither set in infra/app/api.bicep nor optional in README').toEqual([]);
    // Settings the Bicep sets for the code (agreed names) are documented too.
    const undocumented = [...set].filter((s) => /^DPS_/.test(s) && !readme.has(s));
    expect(undocumented, 'set in infra/app/api.bicep but missing from the README configuration table').toEqual([]);
  });

  it('the function app asks for client certificates without requiring them, on HTTPS/TLS 1.2+, Node 22, FC1', async () => {
    const { tree } = await bicep('infra/app/api.bicep');
    const site = resources(tree).find((r) => r.type.startsWith('Microsoft.Web/sites@'));
    const props = objectProperties(objectProperties(site?.body ?? tree.rootNode).get('properties') ?? tree.rootNode);
    expect(props.get('clientCertEnabled')?.text).toBe('true');
    // Never Required (SAS and TPM devices have no certificate); no exclusion paths (they force TLS renegotiation).
    expect(props.get('clientCertMode')?.text).toBe("'Optional'");
    expect(props.has('clientCertExclusionPaths')).toBe(false);
    expect(props.get('httpsOnly')?.text).toBe('true');
    const siteConfig = objectProperties(props.get('siteConfig') ?? tree.rootNode);
    expect(siteConfig.get('minTlsVersion')?.text).toBe("'1.2'");
    expect(siteConfig.get('http20Enabled')?.text).toBe('false');
    const fac = objectProperties(props.get('functionAppConfig') ?? tree.rootNode);
    expect(fac.get('runtime')?.text.replace(/\s+/g, ' ')).toBe("{ name: 'node', version: '22' }");
    const plan = resources(tree).find((r) => r.type.startsWith('Microsoft.Web/serverfarms@'));
    expect(objectProperties(plan?.body ?? tree.rootNode).get('sku')?.text).toMatch(/name: 'FC1'/);
  });

  it('the app settings the template writes load as a Key Vault, Tables-identity, Event Hubs-identity configuration', async () => {
    const { tree } = await bicep('infra/app/api.bicep');
    const settingsResource = resources(tree).find((r) => r.type.startsWith('Microsoft.Web/sites/config@'));
    const props = settingsResource?.body && objectProperties(settingsResource.body).get('properties');
    expect(props).toBeDefined();
    // What ARM would put in the params and expressions: the shapes real deployments produce.
    const samples: Record<string, string> = {
      storageAccountName: 'st0123456789abc',
      identityClientId: '00000000-0000-0000-0000-000000000001',
      applicationInsightsConnectionString: 'InstrumentationKey=00000000-0000-0000-0000-000000000002',
      idScope: '0ne0123ABCD',
      serviceHostNames: 'func-0123456789abc.azurewebsites.net',
      storageTableEndpoint: 'https://st0123456789abc.table.core.windows.net',
      tablePrefix: 'dps',
      keyVaultUri: 'https://kv-0123456789abc.vault.azure.net/',
      keyEncryptionKeyName: 'dps-kek',
      keyVaultName: 'kv-0123456789abc',
      serviceOwnerSecretName: 'dps-service-owner-key',
      eventHubsNamespaceHost: 'evhns-0123456789abc.servicebus.windows.net',
      eventHubName: 'dps-events',
      location: 'westeurope',
    };
    const evaluate = (node: Node): string => {
      if (node.type === 'identifier') {
        const value = samples[node.text];
        if (value === undefined) throw new Error(`no sample for ${node.text}`);
        return value;
      }
      if (node.type === 'string')
        return node.namedChildren
          .map((c) =>
            c.type === 'interpolation' ? evaluate(c.namedChildren[0] ?? c) : c.type === 'string_content' ? c.text : '',
          )
          .join('');
      throw new Error(`cannot evaluate ${node.text}`);
    };
    const env: Record<string, string> = {};
    for (const [name, value] of props ? objectProperties(props) : []) env[name] = evaluate(value);
    // A Key Vault reference: the platform resolves it to the secret the hook wrote (32 random bytes, base64).
    expect(env.DPS_SERVICE_OWNER_KEY).toMatch(/^@Microsoft\.KeyVault\(VaultName=kv-\w+;SecretName=[\w-]+\)$/);
    // Until it resolves, App Service passes the reference text: the service still starts (service API closed).
    expect(loadConfig(env)).toMatchObject({ serviceOwnerKeyUnresolved: true });
    env.DPS_SERVICE_OWNER_KEY = Buffer.alloc(32, 7).toString('base64');
    const cfg = loadConfig(env);
    expect(cfg.keyVault).toEqual({ url: 'https://kv-0123456789abc.vault.azure.net', keyName: 'dps-kek' });
    expect(cfg.masterKey).toBeUndefined();
    expect(cfg.tablesEndpoint).toBe(samples.storageTableEndpoint);
    expect(cfg.tablesConnectionString).toBeUndefined();
    expect(cfg.azureClientId).toBe(samples.identityClientId);
    expect(cfg.events.eventHubs).toEqual({
      kind: 'identity',
      namespace: samples.eventHubsNamespaceHost,
      hubName: 'dps-events',
    });
    expect(cfg.serviceHostNames).toEqual([samples.serviceHostNames]);
    expect(cfg.region).toBe('westeurope');
    expect(cfg.clientCertHeader).toBe('x-arr-clientcert');
    // Nothing the template writes is a key or a connection string with a key.
    expect(
      Object.keys(env).filter((k) => /MASTER_KEY|CONNECTION_STRING$/.test(k) && !k.startsWith('APPLICATIONINSIGHTS')),
    ).toEqual([]);
  });

  it('extracts settings from every reading style', () => {
    const found = settingsReadBy(
      "const a = env.A_1; const b = env['B']; required(env, 'C'); integer(env, \"D\", 3); process.env.E; env?.F;",
    );
    expect([...found].sort()).toEqual(['A_1', 'B', 'C', 'D', 'E', 'F']);
  });

  it('every value the post-provision hooks read is an output of main.bicep (or set by azd)', async () => {
    const { tree } = await bicep('infra/main.bicep');
    const outputs = new Set(declarations(tree, 'output_declaration').map(declaredName));
    const AZD_PROVIDED = new Set(['AZURE_ENV_NAME', 'AZURE_SUBSCRIPTION_ID', 'AZURE_PRINCIPAL_ID']);
    const sh = read('infra/scripts/postprovision.sh');
    const ps1 = read('infra/scripts/postprovision.ps1');
    const used = new Set([
      ...[...sh.matchAll(/\$\{?([A-Z][A-Z0-9_]+)/g)].map((m) => m[1] ?? ''),
      ...[...ps1.matchAll(/\$env:([A-Z][A-Z0-9_]+)/g)].map((m) => m[1] ?? ''),
      ...[...ps1.matchAll(/'([A-Z][A-Z0-9_]{3,})'/g)].map((m) => m[1] ?? ''),
    ]);
    expect(used.size).toBeGreaterThan(4);
    expect([...used].filter((v) => !outputs.has(v) && !AZD_PROVIDED.has(v))).toEqual([]);
    expect(statSync(join(INFRA, 'scripts', 'postprovision.sh')).mode & 0o111).not.toBe(0);
  });

  it('no secret in a template, its parameters or its outputs', () => {
    for (const file of filesUnder(INFRA)) {
      const text = read(file);
      expect(text, file).not.toMatch(/listKeys\(|listSecrets\(|AccountKey=|SharedAccessKey=[A-Za-z0-9+/]{8}/);
      expect(text, file).not.toMatch(/[A-Za-z0-9+/]{40,}={0,2}/);
    }
    // Outputs land in .azure/<env>/.env in clear: names and endpoints only.
    const main = read('infra/main.bicep');
    const outputs = [...main.matchAll(/^output (\w+) \w+ = (.+)$/gm)];
    expect(outputs.length).toBeGreaterThan(5);
    for (const [, name, value] of outputs)
      expect(value, name).not.toMatch(/connectionString|listKeys|getSecret|secret\(/i);
  });

  it('azure.yaml deploys the api service from this folder with the package step package.json defines', () => {
    const yaml = read('azure.yaml');
    const services = /^services:\n((?:[ ]{2}.*\n|\s*\n)+)/m.exec(yaml)?.[1] ?? '';
    const names = [...services.matchAll(/^ {2}([A-Za-z0-9_-]+):\s*$/gm)].map((m) => m[1]);
    expect(names).toEqual(['api']);
    expect(services).toMatch(/^ {4}host: function$/m);
    expect(services).toMatch(/^ {4}language: ts$/m);
    const project = /^ {4}project: (.+)$/m.exec(services)?.[1]?.trim() ?? '';
    const pkg = JSON.parse(read(join(project, 'package.json'))) as { scripts: Record<string, string>; main: string };
    expect(pkg.scripts.package).toMatch(/bundle/);
    expect(pkg.main).toBe('dist/bundle/index.js');
    for (const m of yaml.matchAll(/run: \.\/(\S+)/g)) expect(statSync(join(ROOT, m[1] ?? '')).isFile()).toBe(true);
    // azd finds the app by this tag.
    expect(read('infra/main.bicep')).toMatch(/'azd-service-name': 'api'/);
  });

  it('.funcignore deploys host.json, package.json and the bundle only', () => {
    const rules = read('.funcignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(rules.some((r) => r.startsWith('!'))).toBe(false); // kept simple: no negations to interpret
    const glob = (pattern: string) =>
      new RegExp(
        `^${pattern
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '[^/]*')
          .replace(/\?/g, '[^/]')}$`,
      );
    const ignored = (path: string) =>
      rules.some((rule) => {
        const parts = path.split('/');
        if (rule.includes('/')) return parts.some((_, i) => glob(rule).test(parts.slice(0, i + 1).join('/')));
        return parts.some((p) => glob(rule).test(p));
      });
    const ignoredDirs = /^(node_modules|\.git|dist|\.azurite|\.dev|\.azure|coverage)(\/|$)/;
    const tree = filesUnder(ROOT, (rel) => ignoredDirs.test(rel));
    const built = [
      'dist/bundle/index.js',
      'dist/bundle/index.js.map',
      'dist/functions/deviceRegister.js',
      'dist/shared/config.js',
      'dist/dev/start.js',
      'dist/bench/run.js',
      'node_modules/@azure/functions/package.json',
      'local.settings.json',
    ];
    expect([...tree, ...built].filter((f) => !ignored(f)).sort()).toEqual([
      'dist/bundle/index.js',
      'dist/bundle/index.js.map',
      'host.json',
      'package.json',
    ]);
  });
});
