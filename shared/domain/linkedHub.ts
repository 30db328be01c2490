// A linked IoT hub: where devices can be assigned (what real DPS keeps in ARM as IotHubDefinitionDescription).

export interface LinkedHub {
  /** The hub's host name as devices see it, e.g. `contoso.azure-devices.net`. */
  hostName: string;
  /** `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` with registry write rights. A secret. */
  connectionString: string;
  location?: string;
  /** 1–1000, default 1: the hub's share in hashed allocation. */
  allocationWeight: number;
  /** false: never chosen by allocation, but still selectable by an enrollment's `iotHubs`. */
  applyAllocationPolicy: boolean;
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
