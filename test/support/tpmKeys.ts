// TPM public areas made in software for tests: an RSA-2048 storage key no TPM here holds (a "wrong EK"), and variants.
import { generateKeyPairSync } from 'node:crypto';

import { tpm2b, u16, u32 } from '../../shared/attestation/tpm/marshal';

/** TPMT_PUBLIC of an RSA-2048 key with the SRK template (restricted|decrypt|…, AES-128-CFB, NULL scheme). */
export function rsaStorageTpmt(options: { keyBits?: number; attributes?: number } = {}): Buffer {
  const keyBits = options.keyBits ?? 2048;
  const jwk = generateKeyPairSync('rsa', { modulusLength: keyBits }).publicKey.export({ format: 'jwk' });
  return Buffer.concat([
    u16(0x0001), // RSA
    u16(0x000b), // nameAlg SHA-256
    u32(options.attributes ?? 0x00030472),
    tpm2b(Buffer.alloc(0)), // authPolicy
    u16(0x0006), // AES
    u16(128),
    u16(0x0043), // CFB
    u16(0x0010), // scheme NULL
    u16(keyBits),
    u32(0),
    tpm2b(Buffer.from(jwk.n ?? '', 'base64url')),
  ]);
}

/** base64 of a TPM2B_PUBLIC, as the SDKs send an EK or SRK. */
export const foreignEndorsementKey = (): string => tpm2b(rsaStorageTpmt()).toString('base64');

/** From reference/official-clients.md §3c: what azure-iot-security-tpm sent for a swtpm (its registration ID too). */
export const CAPTURED_EK =
  'AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAwt2YXtsJzdNDIJHTt9gKXWr0ySelI9ZDAZG7c1YPxUfLfXcWrhgYqiyg3JaRFbidxeAPy3X1ARI60V6rJqYYaeSI/XVoBN5uNCCe07F/BdZtmSZ6PROQm314w2k8GmFSdfLlgPeyyE/c5+jt/mPH36u547zXQ9g7aGoSCBvidcMYzCp/iDLZvv16vUo04aa7sp7k43uCxFsMfNcz6lF3za5ivWFvt/K/7slxzqKsA9v0WNcU/TNFZyJnx4XNE5Iu6Gh0t25G39vEZkIJ7sJlM29c7QyxU+vgmaBRlTkXV4lPJnvuwuKyGbLxxZqDxx8FUxOlMfZMnLhoKhpWLS7XsQ==';
export const CAPTURED_SRK =
  'ARoAAQALAAMEcgAAAAYAgABDABAIAAAAAAABAJGzfzaryo8NUXNAR2KBhwBYISyWIeW6I31/+SQfPt6nWPARa37S3TFUt1TO0K2RAjVbd9vcp+mYDHIvGdtiVBVrhNAQWKTyMZmyptD8AdeOxjQSdl2Ri+aunEco9CQhwg5G0SvgsE1tnMo7QBMqSzvGlHlRUKvm7Jl1DG4ri9tXy+pSSY9HrHm2f6uSyzgl3PYUHHTgMGoNih6lHIa7xz+f8cEJL4V58L/PZ6UkulWExLtlSBMu78BQQ2Gacay0bGbojp+a2QbnhgUfdUU9H4xhx+RnyTNEN1Smoi9uYGGiG7GGL3SMG4afin7wYyiaHUoteILIdqeNjJaGkzaO6pc=';
export const CAPTURED_REGISTRATION_ID = '3dn3aesw26tzystefwh4gbauatgfoshvuk3gbxy2zuwrhjhnu7qa';
