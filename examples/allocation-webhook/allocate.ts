// A minimal custom-allocation webhook as an Azure Function (Node v4 programming model), for Open DPS or Azure DPS.
// NOT part of Open DPS's deployment (.funcignore leaves examples/ out): copy it into your own Functions app, deploy
// it, and put its URL, function key included, in an enrollment's `customAllocationDefinition.webhookUrl`.
//
// It sends devices whose payload names a tenant to that tenant's hub, and every other device to the first candidate,
// with an initial twin and a payload the device receives in `registrationState.payload`.
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { app } from '@azure/functions';

/** The parts of DPS's AllocationRequest this webhook reads. */
interface AllocationRequest {
  deviceRuntimeContext: {
    registrationId: string;
    currentIotHubHostName?: string;
    payload?: { tenant?: string; modelId?: string };
  };
  /** The candidate hubs: the answer must name one of them. */
  linkedHubs: string[];
}

const TENANT_HUBS: Record<string, string> = {
  contoso: 'contoso-hub.azure-devices.net',
  fabrikam: 'fabrikam-hub.azure-devices.net',
};

export async function allocate(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const body = (await request.json()) as AllocationRequest;
  const { registrationId, payload } = body.deviceRuntimeContext;
  const wanted = payload?.tenant ? TENANT_HUBS[payload.tenant] : undefined;
  const hub = body.linkedHubs.find((h) => h === wanted) ?? body.linkedHubs[0];
  if (!hub) return { status: 400, jsonBody: { message: 'no candidate hub' } }; // the device sees this status and text
  context.log(`${registrationId} -> ${hub}`);
  return {
    status: 200,
    jsonBody: {
      iotHubHostName: hub,
      initialTwin: {
        tags: { tenant: payload?.tenant ?? 'none' },
        properties: { desired: { telemetryIntervalSeconds: 60 } },
      },
      payload: { tenant: payload?.tenant ?? 'none', modelId: payload?.modelId ?? null },
    },
  };
}

app.http('allocate', { methods: ['POST'], authLevel: 'function', handler: allocate });
