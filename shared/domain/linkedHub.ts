// A linked IoT hub: where devices can be assigned (what real DPS keeps in ARM as IotHubDefinitionDescription).

export interface LinkedHub {
  /** The hub's host name as devices see it, e.g. `contoso.azure-devices.net`. */
  hostName: string;
  /**
   * `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` with registry write rights. A secret. Absent: the service
   * calls the hub with its managed identity (Entra ID token; role "IoT Hub Registry Contributor" on the hub).
   */
  connectionString?: string;
  location?: string;
  /** 1–1000, default 1: the hub's share in hashed allocation. */
  allocationWeight: number;
  /** false: never chosen by allocation, but still selectable by an enrollment's `iotHubs`. */
  applyAllocationPolicy: boolean;
}

// Dot-separated DNS labels of letters, digits and hyphens, plus an optional port (the dev hub emulator is
// `localhost:8444`). Anything else can't be a hub, and `/ ? #` in it would break the config table's row key.
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOST_NAME = new RegExp(`^(${LABEL}(?:\\.${LABEL})*)(?::(\\d{1,5}))?$`);

/** True for a DNS host name of at most 253 characters with an optional `:port`. */
export function isHubHostName(value: string): boolean {
  const match = HOST_NAME.exec(value);
  if (!match) return false;
  const [, host = '', port] = match;
  return host.length <= 253 && (port === undefined || (Number(port) >= 1 && Number(port) <= 65535));
}

export interface HubConnection {
  hostName: string;
  keyName: string;
  key: string;
}

/** Parses an IoT hub connection string; undefined when a part is missing. */
export function parseHubConnectionString(value: string): HubConnection | undefined {
  const parts = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) parts.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const hostName = parts.get('hostname');
  const keyName = parts.get('sharedaccesskeyname');
  const key = parts.get('sharedaccesskey');
  return hostName && keyName && key ? { hostName, keyName, key } : undefined;
}
