// Plan → Terraform-style text. Rendering never decides anything; it only shows the plan.
import { canonicalJson } from '../core/canonical.js';
import type { Change, Json, Plan } from '../core/types.js';
import { summarize } from '../plan/diff.js';

export interface TextOptions {
  color: boolean;
}

const SYMBOL: Record<Change['action'], string> = { create: '+', update: '~', delete: '-', replace: '-/+' };
const VERB: Record<Change['action'], string> = {
  create: 'will be created',
  update: 'will be updated in place',
  delete: 'will be destroyed',
  replace: 'must be replaced',
};
const COLOR: Record<Change['action'], string> = { create: '32', update: '33', delete: '31', replace: '35' };

function paint(on: boolean, code: string, s: string): string {
  return on ? `\u001b[${code}m${s}\u001b[0m` : s;
}

function pretty(v: Json | undefined): string[] {
  if (v === undefined) return ['(none)'];
  return JSON.stringify(JSON.parse(canonicalJson(v)), null, 2).split('\n');
}

/** Line diff (longest common subsequence): small inputs only, as attribute values are. */
function lineDiff(a: string[], b: string[]): string[] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push(`  ${a[i]}`);
      i++;
      j++;
    } else if (i < n && (j >= m || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) {
      // Removals before additions, as in a unified diff: "- old" reads before "+ new".
      out.push(`- ${a[i]}`);
      i++;
    } else {
      out.push(`+ ${b[j]}`);
      j++;
    }
  }
  return out;
}

function renderChange(c: Change, color: boolean): string[] {
  const lines: string[] = [];
  const why = c.drift ? `drift: ${c.reason}` : c.reason;
  lines.push(`  # ${c.address} ${VERB[c.action]} (${why})`);
  lines.push(paint(color, COLOR[c.action], `  ${SYMBOL[c.action]} ${c.address}`));
  const indent = '      ';
  if (c.action === 'create' || c.action === 'delete') {
    const r = (c.after ?? c.before)!;
    for (const [k, v] of Object.entries(r.attrs).sort(([a], [b]) => (a < b ? -1 : 1))) {
      const p = pretty(v);
      lines.push(`${indent}${k}: ${p[0]}`, ...p.slice(1).map((l) => `${indent}${l}`));
    }
  } else {
    const before = c.before!.attrs;
    const after = c.after!.attrs;
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    for (const k of keys) {
      if (canonicalJson(before[k]) === canonicalJson(after[k])) continue;
      const a = pretty(before[k]);
      const b = pretty(after[k]);
      if (a.length === 1 && b.length === 1) {
        lines.push(`${indent}~ ${k}: ${a[0]} -> ${b[0]}`);
      } else {
        lines.push(`${indent}~ ${k}:`);
        for (const l of lineDiff(a, b)) {
          const code = l.startsWith('+') ? '32' : l.startsWith('-') ? '31' : '';
          lines.push(`${indent}  ${code ? paint(color, code, l) : l}`);
        }
      }
    }
    if (c.action === 'replace' && c.kind === 'key') lines.push(`${indent}(a new key is issued; the old one stays valid for the rotation grace period)`);
    if (c.action === 'replace' && c.kind === 'password')
      lines.push(
        `${indent}(a new password is set; the old one stops working at once for new logins: a PostgreSQL role or MariaDB account holds one password. Sessions already open with it stay open, unless it is revoked)`,
      );
  }
  if (c.action === 'delete' && c.kind === 'password' && c.address.includes('~'))
    lines.push(`${indent}(the password is cleared, and every open session of its login is ended)`);
  lines.push('');
  return lines;
}

export function renderPlanText(plan: Plan, opts: TextOptions = { color: false }): string {
  const out: string[] = [];
  // A notice about one object names it: "superseded credential stays valid until …" alone does
  // not say whose.
  for (const n of plan.notices) out.push(`${n.level === 'warning' ? 'Warning' : 'Note'}: ${n.address ? `${n.address}: ` : ''}${n.message}`);
  if (plan.notices.length) out.push('');
  if (plan.changes.length === 0) {
    out.push('No changes. The backends match the spec.');
    return `${out.join('\n')}\n`;
  }
  out.push('datagrant will perform the following actions:', '');
  out.push('  Legend: + create, ~ update in place, - destroy, -/+ replace', '');
  for (const c of plan.changes) out.push(...renderChange(c, opts.color));
  const drift = plan.changes.filter((c) => c.drift).length;
  if (drift) out.push(`${drift} change${drift === 1 ? '' : 's'} revert${drift === 1 ? 's' : ''} drift (edits made outside datagrant).`);
  const s = summarize(plan);
  out.push(`Plan: ${s.add} to add, ${s.change} to change, ${s.destroy} to destroy.`);
  return `${out.join('\n')}\n`;
}

export function renderPlanJson(plan: Plan): string {
  return `${JSON.stringify({ ...plan, summary: summarize(plan) }, null, 2)}\n`;
}
