// audit log | verify.
import { withStore, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

export async function auditLog(io: Io, opts: CommonOptions & { json?: boolean; limit?: number }): Promise<number> {
  const entries = await withStore(io, opts, (s) => s.auditEntries());
  const shown = opts.limit ? entries.slice(-opts.limit) : entries;
  if (opts.json) {
    io.stdout(`${JSON.stringify(shown, null, 2)}\n`);
    return 0;
  }
  for (const e of shown) {
    io.stdout(
      `${String(e.seq).padStart(6)}  ${e.at}  ${e.actor}  ${e.event}${e.address ? `  ${e.address}` : ''}  ${e.outcome}${e.detail ? `  (${e.detail})` : ''}\n`,
    );
  }
  if (shown.length === 0) io.stdout('The audit log is empty.\n');
  return 0;
}

/** Exit 0 when the chain is intact, 1 naming the first entry that does not fit. */
export async function auditVerify(io: Io, opts: CommonOptions): Promise<number> {
  const v = await withStore(io, opts, (s) => s.verifyAudit());
  if (v.ok) {
    io.stdout(`Audit chain intact: ${v.entries} entries verified.\n`);
    const last = v.keyChanges?.at(-1);
    if (last) {
      io.stdout(
        `The master key changed at ${v.keyChanges!.length > 1 ? 'entries' : 'entry'} ${v.keyChanges!.map((c) => `${c.seq} (${c.at})`).join(', ')}: ` +
          `entries from ${last.seq} on verify under the current key; entry ${last.seq}, under it, vouches for the ${last.seq - 1} before it.\n`,
      );
    }
    return 0;
  }
  io.stderr(`Audit chain BROKEN at entry ${v.firstBad!.seq}: ${v.firstBad!.reason}.\n`);
  return 1;
}
