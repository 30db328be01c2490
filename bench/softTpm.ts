// A software stand-in for a device's TPM, for the benchmark's TPM devices: it holds EK and SRK private keys and opens
// DPS activation blobs the way TPM2_ActivateCredential + TPM2_Import do (integrity HMACs not re-checked: the server
// under test made the blob, and test/unit/tpmActivation.test.ts proves it on a real TPM).
import type { KeyObject } from 'node:crypto';
import { constants, createDecipheriv, generateKeyPairSync, privateDecrypt } from 'node:crypto';

import { kdfa } from '../shared/attestation/tpm/crypto';
import { TpmReader, tpm2b, u16, u32 } from '../shared/attestation/tpm/marshal';
import type { TpmPublicKey } from '../shared/attestation/tpm/publicKey';
import { parseTpmtPublic, tpmName } from '../shared/attestation/tpm/publicKey';

export class SoftTpm {
  readonly ek: TpmPublicKey;
  readonly srk: TpmPublicKey;
  private readonly ekPrivate: KeyObject;
  private readonly srkPrivate: KeyObject;

  constructor() {
    [this.ek, this.ekPrivate] = storageKey();
    [this.srk, this.srkPrivate] = storageKey();
  }

  /** The HMAC key inside an activation blob made for this TPM. */
  open(blobBase64: string): Buffer {
    const r = new TpmReader(Buffer.from(blobBase64, 'base64'));
    const idObject = new TpmReader(r.tpm2b());
    idObject.tpm2b(); // integrity HMAC
    const encIdentity = idObject.take(idObject.remaining);
    const credentialSeed = this.decrypt(this.ekPrivate, 'IDENTITY', r.tpm2b());
    const storage = kdfa(credentialSeed, 'STORAGE', this.srk.name, Buffer.alloc(0), this.ek.symmetricKeyBits);
    const innerKey = new TpmReader(aesCfbDecrypt(storage, encIdentity)).tpm2b();

    const duplicate = new TpmReader(r.tpm2b());
    duplicate.tpm2b(); // outer HMAC
    const dupSensitive = duplicate.take(duplicate.remaining);
    const duplicateSeed = this.decrypt(this.srkPrivate, 'DUPLICATE', r.tpm2b());
    const idPublic = r.tpm2b();
    const outer = kdfa(duplicateSeed, 'STORAGE', tpmName(idPublic), Buffer.alloc(0), this.srk.symmetricKeyBits);
    const inner = new TpmReader(aesCfbDecrypt(innerKey, aesCfbDecrypt(outer, dupSensitive)));
    inner.tpm2b(); // integrity digest
    const sensitive = new TpmReader(inner.tpm2b());
    sensitive.u16(); // type
    sensitive.tpm2b(); // authValue
    sensitive.tpm2b(); // seedValue
    return sensitive.tpm2b();
  }

  private decrypt(key: KeyObject, label: string, secret: Buffer): Buffer {
    const oaepLabel = Buffer.from(`${label}\0`, 'latin1');
    return privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel }, secret);
  }
}

function aesCfbDecrypt(key: Buffer, data: Buffer): Buffer {
  const decipher = createDecipheriv(`aes-${key.length * 8}-cfb`, key, Buffer.alloc(16));
  return Buffer.concat([decipher.update(data), decipher.final()]);
}

/** An RSA-2048 storage key with the SRK template (an EK with another template works the same way here). */
function storageKey(): [TpmPublicKey, KeyObject] {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const n = Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url');
  const tpmt = Buffer.concat([
    u16(0x0001), // RSA
    u16(0x000b), // SHA-256
    u32(0x00030472), // restricted|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA
    tpm2b(Buffer.alloc(0)),
    u16(0x0006), // AES-128-CFB
    u16(128),
    u16(0x0043),
    u16(0x0010), // NULL scheme
    u16(2048),
    u32(0),
    tpm2b(n),
  ]);
  return [parseTpmtPublic(tpmt), privateKey];
}
