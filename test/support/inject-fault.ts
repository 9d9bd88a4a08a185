// Preloaded into a service process (node --import) by tests that need a bug nobody foresaw: on SIGUSR2
// it throws from a callback (an uncaught exception), on SIGWINCH it rejects a promise nobody handles.
// Test code only; it changes nothing else in the process.
process.on('SIGUSR2', () => {
  setImmediate(() => {
    throw new Error('injected uncaught exception');
  });
});
process.on('SIGWINCH', () => {
  void Promise.reject(new Error('injected unhandled rejection'));
});
