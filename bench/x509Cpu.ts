// CPU time of one X.509 verification in this process: a device leaf of a 3-level chain (leaf ← intermediate ← root)
// checked against a group referencing the verified root, through the uploaded intermediate. "per new device" is the
// steady state (the CA certificates parsed and the intermediate's signature checked once per instance); "cold" is a
// fresh instance, where everything is parsed and both signatures are verified.
import { threeLevelChain, makeCert } from '../dev/testPki';
import { X509Verifier } from '../shared/attestation/x509/verifier';
import type { HeldCaCertificate } from '../shared/attestation/x509/verifier';
import type { EnrollmentGroup } from '../shared/domain/enrollment';

export interface X509CpuResult {
  samples: number;
  perNewDeviceUs: number;
  coldUs: number;
}

export async function measureX509Verification(samples = 300): Promise<X509CpuResult> {
  const { root, intermediate } = await threeLevelChain('bench-cpu');
  const leaves = await Promise.all(
    Array.from({ length: samples }, (_, i) => makeCert({ cn: `bench-cpu-${i}`, issuer: intermediate })),
  );
  const cas: HeldCaCertificate[] = [
    { name: 'root', certificate: root.der, isVerified: true },
    { name: 'intermediate', certificate: intermediate.der, isVerified: false },
  ];
  const groups: EnrollmentGroup[] = [
    { enrollmentGroupId: 'g', attestation: { type: 'x509', x509: { caReferences: { primary: 'root' } } } },
  ];
  const verify = (verifier: X509Verifier, i: number) => {
    const leaf = leaves[i];
    if (!leaf) return;
    verifier.verify({
      clientCertificate: leaf.der,
      registrationId: `bench-cpu-${i}`,
      individual: undefined,
      groups,
      caCertificates: cas,
      now: new Date(),
    });
  };
  const cpuUs = (run: () => void): number => {
    const before = process.cpuUsage();
    run();
    const used = process.cpuUsage(before);
    return (used.user + used.system) / samples;
  };
  const shared = new X509Verifier();
  verify(shared, 0); // warm: CA certificates parsed, the intermediate's signature checked
  const perNewDeviceUs = cpuUs(() => {
    for (let i = 0; i < samples; i++) verify(shared, i === 0 ? samples - 1 : i);
  });
  const coldUs = cpuUs(() => {
    for (let i = 0; i < samples; i++) verify(new X509Verifier(), i);
  });
  return { samples, perNewDeviceUs, coldUs };
}
