// Run datagrant's CLI in-process with captured output, a chosen working directory and clock.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import type { Io } from '../../src/app/io.js';
import type { BackendOptions } from '../../src/backends/factory.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Workspace {
  dir: string;
  env: NodeJS.ProcessEnv;
  /** Injected clock for every command run here; defaults to the real one. */
  now?: () => Date;
  writeSpec(text: string, name?: string): string;
  run(...args: string[]): Promise<CliResult>;
  /** Everything every command printed so far (for secret scans). */
  transcript: string[];
  cleanup(): void;
}

/** Commands that print a secret because they were asked in so many words. */
const REVEALING = (args: string[]) => args.includes('--reveal') || args.includes('export');

export function workspace(env: NodeJS.ProcessEnv = {}): Workspace {
  const dir = mkdtempSync(join(tmpdir(), 'dg-ws-'));
  const ws: Workspace = {
    dir,
    env: { ...env, DATAGRANT_ACTOR: 'test@cli' },
    transcript: [],
    writeSpec(text, name = 'datagrant.yaml') {
      const f = join(dir, name);
      writeFileSync(f, text);
      return f;
    },
    async run(...args) {
      let stdout = '';
      let stderr = '';
      const io: Io = {
        stdout: (s) => (stdout += s),
        stderr: (s) => (stderr += s),
        env: ws.env,
        cwd: dir,
        isTTY: false,
        now: ws.now ?? (() => new Date()),
      };
      const code = await main(args, io);
      if (!REVEALING(args)) ws.transcript.push(stdout, stderr);
      return { code, stdout, stderr };
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  return ws;
}

export type { BackendOptions };
