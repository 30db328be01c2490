// Preloaded into the Azurite process (`node --require`): exit when the driver's IPC channel closes, so a driver that
// is killed outright (SIGKILL, OOM) does not leave Azurite running.
process.once('disconnect', () => process.exit(0));
