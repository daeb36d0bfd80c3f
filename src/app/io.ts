// What a command may touch of the outside world, passed in so tests can call commands directly.
export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Whether stderr is a terminal (progress display, colour). */
  isTTY: boolean;
  /** Ask a yes/no question on a terminal; undefined when there is no terminal. */
  confirm?: (question: string) => Promise<boolean>;
  now: () => Date;
}

export function processIo(): Io {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    env: process.env,
    cwd: process.cwd(),
    isTTY: Boolean(process.stderr.isTTY),
    confirm: process.stdin.isTTY
      ? async (question) => {
          const { createInterface } = await import('node:readline/promises');
          const rl = createInterface({ input: process.stdin, output: process.stderr });
          try {
            return (await rl.question(question)).trim() === 'yes';
          } finally {
            rl.close();
          }
        }
      : undefined,
    now: () => new Date(),
  };
}
