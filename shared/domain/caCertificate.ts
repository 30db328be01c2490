// CA certificates the service holds (DPS keeps them in ARM as `certificates/{name}`): roots and intermediates that
// enrollment groups reference by name, trusted as anchors only once proof of possession verified them.

export interface CaCertificate {
  name: string;
  /** Base64 DER. */
  certificate: string;
  isVerified: boolean;
  /** The code a verification certificate's subject CN must carry; set by generateVerificationCode. */
  verificationCode?: string;
  created: string;
  updated: string;
}

/** DPS's limit on CA certificates per service (reference/dps-protocol.md §7). */
export const MAX_CA_CERTIFICATES = 25;
/** ARM resource names: letters, digits, `.`, `_`, `-` (as linked hubs and policies here). */
export const CA_CERTIFICATE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
