// The latest TPM challenge of each registration: its keys sealed at rest (SecretBox), in the device's own partition
// (row `tpmChallenge`, beside `enrollment` and `registration`), so a challenge is one write and a check one point read.
import type { TableClient } from '@azure/data-tables';

import { registrationKey } from '../../domain/registrationId';
import type { SecretBox } from '../../secrets/envelope';
import { TPM_CHALLENGE as ROW } from '../../storage/devices';
import { isStatus } from '../../storage/tables';

export interface TpmChallenge {
  /** base64 of the HMAC key the device's TPM imports from the challenge: it signs the device's SAS tokens. */
  challengeKey: string;
  /** base64 of the key for the device's IoT hub identity, and its activation blob (for `registrationState.tpm`). */
  hubKey: string;
  hubAuthenticationKey: string;
  /** The canonical EK (base64 TPM2B_PUBLIC) the challenge was made for. */
  endorsementKey: string;
  issuedAtUtc: string;
}

/** Where challenges are kept; the attestor's only state. */
export interface TpmChallengeStore {
  /** Replaces the registration's challenge: only the latest one is valid. */
  save(registrationId: string, challenge: TpmChallenge): Promise<void>;
  /**
   * `sealed`: the challenge row as the device partition's read returned it (null: there was none), so the check costs
   * no round trip of its own; undefined: read it now.
   */
  latest(registrationId: string, sealed?: string | null): Promise<TpmChallenge | undefined>;
}

export class TableTpmChallengeStore implements TpmChallengeStore {
  constructor(
    private readonly table: TableClient,
    private readonly secrets: SecretBox,
  ) {}

  async save(registrationId: string, challenge: TpmChallenge): Promise<void> {
    const entity = {
      partitionKey: registrationKey(registrationId),
      rowKey: ROW,
      sealed: await this.secrets.seal(challenge),
    };
    await this.table.upsertEntity(entity, 'Replace');
  }

  async latest(registrationId: string, sealed?: string | null): Promise<TpmChallenge | undefined> {
    if (sealed === null) return undefined;
    if (sealed !== undefined) return this.secrets.open<TpmChallenge>(sealed);
    try {
      const row = await this.table.getEntity<{ sealed: string }>(registrationKey(registrationId), ROW);
      return await this.secrets.open<TpmChallenge>(row.sealed);
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }
}
