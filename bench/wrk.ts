// wrk, the load generator the HTTP benchmarks use (Debian's package), run and read in one place.
import { spawn, spawnSync } from 'node:child_process';

export interface WrkFigures {
  rps: number;
  p50: number;
  p99: number;
  /** Responses other than 2xx/3xx. */
  bad: number;
  /** wrk's "Socket errors" line, if any. */
  socketErrors?: string;
}

export function requireWrk(): void {
  if (spawnSync('wrk', ['--version']).error) throw new Error('wrk is not installed: `npm run bench` installs it (apt-get install -y wrk)');
}

/**
 * One wrk run of `script` (Lua) against `base`, read back. Not spawnSync: the calling process must
 * keep reading the output of what it started (moto's request log, an IdP it hosts) while wrk runs,
 * or moto blocks on a full pipe and the load stalls.
 */
export async function runWrk(opts: { base: string; script: string; connections: number; seconds: number }): Promise<WrkFigures> {
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn('wrk', ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', '-s', opts.script, opts.base]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (status) => resolve({ status, stdout, stderr }));
  });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const ms = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)$`, 'm').exec(r.stdout);
    if (!m) throw new Error(`cannot read p${p} from wrk:\n${r.stdout}`);
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2] as 'us' | 'ms' | 's'];
  };
  const socketErrors = /Socket errors:.*/.exec(r.stdout)?.[0];
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]),
    p50: ms('50'),
    p99: ms('99'),
    bad: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0),
    ...(socketErrors ? { socketErrors } : {}),
  };
}
