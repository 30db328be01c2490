// One measurement window: the host's Table round trips, RSS peak, CPU and event-loop delay, the hub emulator's,
// Azurite's, the driver's and the rest of the machine's CPU, around a piece of load.
import type { AzuriteProcess } from './azuriteProcess';
import type { HostProcess } from './hostControl';
import type { HostStats } from './hostProtocol';
import { machineBusySeconds } from './processes';

export interface Window {
  tableRequests: number;
  outboxRequests: number;
  hostRssPeakMb: number;
  hostCpuMs: number;
  hostConnectionsOpened: number;
  hostLoopDelayMs: HostStats['eventLoopDelayMs'];
  /** The hub emulator's CPU (its own process). */
  hubCpuMs: number;
  /** undefined where /proc is not available. */
  azuriteCpuMs: number | undefined;
  driverCpuMs: number;
  /** CPU the rest of the machine used meanwhile (other processes, steal): high values mean a noisy run. */
  otherCpuMs: number | undefined;
  /** Events the host's outbox delivered during the window. */
  eventsDelivered: number;
}

export async function measureWindow<T>(
  host: HostProcess,
  azurite: AzuriteProcess,
  load: () => Promise<T>,
): Promise<{ value: T; window: Window }> {
  const before = await host.resetWindow();
  const azuriteBefore = azurite.cpuSeconds();
  const machineBefore = machineBusySeconds();
  const driverBefore = process.cpuUsage();
  const value = await load();
  const driver = process.cpuUsage(driverBefore);
  const azuriteAfter = azurite.cpuSeconds();
  const machineAfter = machineBusySeconds();
  const after = await host.stats();
  const hostCpuMs = (after.cpuMicros - before.cpuMicros) / 1000;
  const hubCpuMs = (after.hubCpuMicros - before.hubCpuMicros) / 1000;
  const azuriteCpuMs =
    azuriteBefore === undefined || azuriteAfter === undefined ? undefined : (azuriteAfter - azuriteBefore) * 1000;
  const driverCpuMs = (driver.user + driver.system) / 1000;
  const otherCpuMs =
    machineBefore === undefined || machineAfter === undefined || azuriteCpuMs === undefined
      ? undefined
      : Math.max(0, (machineAfter - machineBefore) * 1000 - hostCpuMs - hubCpuMs - azuriteCpuMs - driverCpuMs);
  return {
    value,
    window: {
      tableRequests: after.tableRequests - before.tableRequests,
      outboxRequests: after.outboxRequests - before.outboxRequests,
      hostRssPeakMb: after.rssPeakBytes / 1024 / 1024,
      hostCpuMs,
      hostLoopDelayMs: after.eventLoopDelayMs,
      hostConnectionsOpened: after.connectionsOpened - before.connectionsOpened,
      hubCpuMs,
      azuriteCpuMs,
      driverCpuMs,
      otherCpuMs,
      eventsDelivered: after.events.delivered - before.events.delivered,
    },
  };
}
