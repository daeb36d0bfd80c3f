// The AWS SDK warns once per process under Node 20 that releases after early 2027 need Node 22.
// The SDK is pinned, so that warning is noise on every run; every other warning still shows.
export function silenceSdkNodeVersionWarning(): void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === 'string' ? warning : (warning?.message ?? '');
    if (text.startsWith('NodeVersionSupportWarning')) return;
    emit(warning, ...rest);
  });
}
