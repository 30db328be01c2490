// Runs in every test worker before the suites: lets the official SDKs reach host:port (see dev/hostPortShim.cjs).
import '../../dev/hostPortShim.cjs';
