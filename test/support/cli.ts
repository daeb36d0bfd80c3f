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
  /** Sees stderr as it is written (a prompt a test answers while the command waits). */
  onStderr?: (chunk: string) => void;
  /** Answers apply's confirmation question as a person at a terminal would; unset, there is no terminal. */
  confirm?: (question: string) => Promise<boolean>;
  writeSpec(text: string, name?: string): string;
  run(...args: string[]): Promise<CliResult>;
  /**
   * Runs a command function directly, with this workspace's Io and captured output: for options
   * the command line cannot express (BackendOptions that inject faults).
   */
  call(command: (io: Io) => Promise<number>): Promise<CliResult>;
  /** Everything every command printed so far (for secret scans). */
  transcript: string[];
  cleanup(): void;
}

/** Commands that print a secret because they were asked in so many words. */
const REVEALING = (args: string[]) => args.includes('--reveal') || args.includes('export');

export function workspace(env: NodeJS.ProcessEnv = {}): Workspace {
  const dir = mkdtempSync(join(tmpdir(), 'dg-ws-'));
  const capture = async (command: (io: Io) => Promise<number>): Promise<CliResult> => {
    let stdout = '';
    let stderr = '';
    const io: Io = {
      stdout: (s) => (stdout += s),
      stderr: (s) => {
        stderr += s;
        ws.onStderr?.(s);
      },
      env: ws.env,
      cwd: dir,
      isTTY: false,
      ...(ws.confirm ? { confirm: ws.confirm } : {}),
      now: ws.now ?? (() => new Date()),
    };
    const code = await command(io);
    return { code, stdout, stderr };
  };
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
      const r = await capture((io) => main(args, io));
      if (!REVEALING(args)) ws.transcript.push(r.stdout, r.stderr);
      return r;
    },
    async call(command) {
      const r = await capture(command);
      ws.transcript.push(r.stdout, r.stderr);
      return r;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  return ws;
}

export type { BackendOptions };
