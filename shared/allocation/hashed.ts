// Hashed ("evenly weighted distribution") allocation: weighted rendezvous hashing of the registration ID over hubs.
import { createHash } from 'node:crypto';

export interface HubCandidate {
  hostName: string;
  allocationWeight: number;
}

/**
 * Picks one hub, deterministically: each hub scores weight / -ln(u), u a uniform draw from a hash of the lower-cased
 * registration ID and hub name; the highest score wins. A hub's share is proportional to its weight, and adding or
 * removing a hub moves only the devices that must move. DPS does not publish its hash; any stable one is compatible.
 */
export function allocateHashed<T extends HubCandidate>(
  registrationId: string,
  candidates: readonly T[],
): T | undefined {
  let best: T | undefined;
  let bestScore = 0; // a hub must score above 0: weight 0 (or NaN) is never chosen
  const id = registrationId.toLowerCase();
  for (const hub of candidates) {
    const digest = createHash('sha256').update(`${id}\n${hub.hostName.toLowerCase()}`).digest();
    // 52 bits fit a double exactly; +0.5 keeps u strictly inside (0, 1).
    const u = (Number(digest.readBigUInt64BE(0) >> 12n) + 0.5) / 2 ** 52;
    const score = Math.max(hub.allocationWeight, 0) / -Math.log(u);
    if (score > bestScore) {
      bestScore = score;
      best = hub;
    }
  }
  return best;
}
