// iam-policy, pg-setup: what datagrant's own identity needs, printed from the spec (issue 16).
// Neither reads the state nor calls a backend.
import { provisionerPolicy } from '../../compile/aws/provisioner-policy.js';
import { UsageError } from '../../core/errors.js';
import { pgSetupSql } from '../../render/pg-setup.js';
import type { Spec } from '../../spec/schema.js';
import { loadSpecFor, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

/** The one backend of `type` the command is about: `--backend`, or the spec's only one. */
function pickBackend(spec: Spec, type: 'aws' | 'postgres', chosen: string | undefined): string {
  const names = Object.entries(spec.backends)
    .filter(([, b]) => b.type === type)
    .map(([n]) => n);
  if (chosen !== undefined) {
    if (!names.includes(chosen)) {
      throw new UsageError(`--backend ${chosen}: the spec has no ${type} backend of that name (its ${type} backends: ${names.join(', ') || 'none'})`);
    }
    return chosen;
  }
  if (names.length === 1) return names[0]!;
  throw new UsageError(
    names.length ? `the spec has ${names.length} ${type} backends (${names.join(', ')}); choose one with --backend` : `the spec has no ${type} backend`,
  );
}

export async function iamPolicyCommand(
  io: Io,
  opts: CommonOptions & { backend?: string; account?: string; withAccess?: boolean; explain?: boolean },
): Promise<number> {
  if (opts.account !== undefined && !/^\d{12}$/.test(opts.account)) throw new UsageError(`--account ${opts.account}: an AWS account id is 12 digits`);
  const { spec } = loadSpecFor(io, opts, io.now());
  const backend = pickBackend(spec, 'aws', opts.backend);
  const p = provisionerPolicy(spec, backend, {
    ...(opts.account ? { account: opts.account } : {}),
    ...(opts.withAccess ? { withAccess: true } : {}),
  });
  if (!opts.explain) {
    io.stdout(`${JSON.stringify(p.document, null, 2)}\n`);
    return 0;
  }
  const lines = [`The IAM policy datagrant's own identity needs on backend ${backend}, one statement per concern:`, ''];
  for (const s of p.statements) {
    lines.push(`${s.sid}: ${s.why}`);
    lines.push(`  on ${s.resources.join(', ')}`);
    lines.push(`  ${s.actions.join(', ')}`);
  }
  lines.push('', 'Notes:', ...p.notes.map((n) => `- ${n}`));
  if (p.caller) {
    lines.push(
      '',
      `The backend assumes a role: the policy above is the role's. The identity that assumes it (the standard credential chain) needs only:`,
      JSON.stringify(p.caller, null, 2),
    );
  }
  lines.push('', 'The policy (without --explain, only this is printed):', JSON.stringify(p.document, null, 2));
  io.stdout(`${lines.join('\n')}\n`);
  return 0;
}

export async function pgSetupCommand(io: Io, opts: CommonOptions & { backend?: string; role?: string }): Promise<number> {
  const loaded = loadSpecFor(io, opts, io.now());
  const backend = pickBackend(loaded.spec, 'postgres', opts.backend);
  io.stdout(pgSetupSql(loaded.spec, backend, { ...(opts.role ? { role: opts.role } : {}), source: loaded.source.file }));
  return 0;
}
