// An access review's revoke decisions as a change to review like any other: a unified diff of the
// spec file that removes the grants and group memberships behind them, plus the steps no spec
// change can take (an IdP group, access datagrant does not manage). Every revoked row comes out
// with an edit, a step or a note saying why neither is needed: none is dropped. Pure: the spec's
// text, the spec as loaded and `now` are passed in.
import { createTwoFilesPatch } from 'diff';
import { intendedAccess } from '../compile/access.js';
import { sha256 } from '../core/canonical.js';
import { DatagrantError, SpecError } from '../core/errors.js';
import { atLeast, type AccessReportRow, type IntendedAccess } from '../model/access.js';
import type { Review, ReviewDecision, RowOutcome } from '../model/review.js';
import { removeSequenceItems, type SeqRemoval } from '../spec/edit.js';
import { parseSpec } from '../spec/load.js';
import type { Spec } from '../spec/schema.js';
import { describeRow, reviewRows } from './review.js';

export interface RevocationInput {
  review: Review;
  /** The spec file's text now, and its path as the patch names it (relative to where it is applied). */
  specText: string;
  specFile: string;
  /** The spec as the file says it, and merged with the SCIM people (as plan merges them). */
  fileSpec: Spec;
  spec: Spec;
  /** For validating the patched text as `validate` would (`${VAR}` substitution). */
  env: Record<string, string | undefined>;
  now: Date;
}

export interface RevocationItem {
  n: number;
  row: AccessReportRow;
  /** The standing revoke decisions. */
  decisions: ReviewDecision[];
  /** What the patch changes for it, in words. */
  edits: string[];
  /** What a person must do outside the spec, in words. */
  manual: string[];
  notes: string[];
}

export interface RevocationPlan {
  items: RevocationItem[];
  /** The spec's text with the edits made; equal to the input when there are none. */
  text: string;
  /** A unified diff of the spec file (`git apply`, `patch -p1`); empty when the spec need not change. */
  patch: string;
  /** Rows no reviewer revoked that the patch removes too (the same grant or group membership carries them). */
  alsoRemoved: { n: number; row: AccessReportRow; outcome: RowOutcome; because: string[] }[];
  /** Worth a look before applying: the spec changed since the review, a kept row the patch removes. */
  warnings: string[];
}

const DIRECT = /^principals\.(.+)\.grants\[(\d+)\]$/;
const GROUP = /^groups\.(.+)\.grants\[(\d+)\]$/;

const grantWords = (g: IntendedAccess) => `${g.level} on ${g.dataset}${g.expires ? `, expires ${g.expires}` : ''}`;

/** The spec's grants behind a row now: the principal's grants of the dataset at the row's level or above. */
const grantsBehind = (intended: readonly IntendedAccess[], row: AccessReportRow) =>
  intended.filter((g) => g.principal === row.principal && g.backend === row.backend && g.dataset === row.dataset && atLeast(g.level, row.level));

/** IdP group names that `scim.groups` maps to a datagrant group (matched ignoring case, as serve does). */
const idpGroupsOf = (spec: Spec, group: string) =>
  Object.entries(spec.scim?.groups ?? {})
    .filter(([, g]) => g.toLowerCase() === group.toLowerCase())
    .map(([idp]) => idp);

export function planRevocations(input: RevocationInput): RevocationPlan {
  const { review, spec, fileSpec, now } = input;
  const rows = reviewRows(review);
  const revoked = rows.filter((r) => r.outcome.outcome === 'revoke');
  const intendedNow = intendedAccess(spec, now);
  const removals = new Map<string, { removal: SeqRemoval; words: string; items: RevocationItem[] }>();
  const warnings: string[] = [];

  const items: RevocationItem[] = revoked.map(({ n, row, decisions }) => {
    const item: RevocationItem = { n, row, decisions: decisions.filter((d) => d.decision === 'revoke'), edits: [], manual: [], notes: [] };
    const remove = (removal: SeqRemoval, words: string) => {
      const key = JSON.stringify(removal);
      const found = removals.get(key) ?? { removal, words, items: [] };
      found.items.push(item);
      removals.set(key, found);
      item.edits.push(words);
    };
    const principal = row.principal;
    if (principal !== undefined && row.managed) {
      const fromFile = Object.hasOwn(fileSpec.principals, principal) ? fileSpec.principals[principal] : undefined;
      const behind = grantsBehind(intendedNow, row);
      for (const g of behind) {
        const expiring = g.expires ? ` (the grant expires ${g.expires}; it is removed now all the same)` : '';
        const direct = DIRECT.exec(g.path);
        const group = GROUP.exec(g.path);
        if (g.request !== undefined) {
          // Not in the file: the access ends with the request, or earlier when it is cancelled.
          item.manual.push(
            `${principal} has ${grantWords(g)} through ${g.via}, not through the spec: cancel it with \`datagrant requests cancel ${g.request} --as ${principal}\`, then apply (serve applies at once)`,
          );
        } else if (direct && fromFile) {
          remove({ path: ['principals', principal, 'grants'], index: Number(direct[2]) }, `remove ${g.path} (${grantWords(g)})${expiring}`);
        } else if (group && fromFile && fromFile.groups.includes(group[1]!)) {
          const name = group[1]!;
          const other = intendedNow.filter((o) => o.principal === principal && o.via === `group ${name}` && o.path !== g.path);
          const loses = other.length ? `; ${principal} also loses what ${name} grants: ${[...new Set(other.map(grantWords))].join(', ')}` : '';
          remove(
            { path: ['principals', principal, 'groups'], index: fromFile.groups.indexOf(name) },
            `remove ${principal} from group ${name} (principals.${principal}.groups, which grants ${grantWords(g)} through ${g.path})${expiring}${loses}`,
          );
        } else if (group && !fromFile) {
          const idp = idpGroupsOf(spec, group[1]!);
          const email = spec.principals[principal]?.email;
          item.manual.push(
            idp.length
              ? `remove ${email ?? principal} from the identity provider's group${idp.length > 1 ? 's' : ''} ${idp.map((x) => JSON.stringify(x)).join(', ')} (scim.groups maps ${idp.length > 1 ? 'them' : 'it'} to ${group[1]}, which grants ${grantWords(g)}); datagrant serve then removes the access${expiring}`
              : `${principal} comes from SCIM and gets ${grantWords(g)} through group ${group[1]}: remove them from the identity provider's group mapped to it${expiring}`,
          );
        } else {
          item.manual.push(`edit the spec by hand: remove ${g.path} for ${principal} (${grantWords(g)}); it is not a grant or membership the patch can remove`);
        }
      }
      if (!behind.length && row.intended.length) {
        item.notes.push('the spec no longer grants it (changed since the review started): nothing to remove from the spec');
      }
      if (row.status === 'actual') {
        item.manual.push(
          `not in the spec, so no spec change removes it: \`datagrant apply\` reverts it if it is drift on datagrant's own objects (\`datagrant plan\` lists it); otherwise remove it by hand on backend ${row.backend}: ${row.actual.map((p) => p.via).join('; ')}`,
        );
      }
    } else {
      const holder = row.holder ? `${row.holder.kind} ${row.holder.id}` : row.who;
      for (const p of row.actual) item.manual.push(`on backend ${row.backend}, remove ${p.via} (holder ${holder}; not managed by datagrant)`);
      if (!row.actual.length) item.manual.push(`on backend ${row.backend}, remove the access of ${holder} (not managed by datagrant)`);
      if (row.known) {
        // An entry may name several holders by pattern: taking it out is a person's edit.
        item.manual.push(`the spec's knownAccess.${row.known.name} accepts this access (${row.known.reason}): once it is removed, narrow or remove that entry`);
      }
    }
    if (!item.edits.length && !item.manual.length && !item.notes.length) {
      item.notes.push('nothing in the spec grants it and the review recorded no path to remove: check it by hand');
    }
    return item;
  });

  const outcome = removeSequenceItems(
    input.specText,
    [...removals.values()].map((r) => r.removal),
  );
  for (const { removal, why } of outcome.refused) {
    const r = removals.get(JSON.stringify(removal))!;
    for (const item of r.items) {
      item.edits = item.edits.filter((e) => e !== r.words);
      item.manual.push(`edit the spec by hand (${why}): ${r.words}`);
    }
  }

  let after: Spec = spec;
  if (outcome.text !== input.specText) {
    try {
      const fileAfter = parseSpec(outcome.text, { file: input.specFile, env: input.env, now }).spec;
      const scim = Object.fromEntries(Object.entries(spec.principals).filter(([p]) => !Object.hasOwn(fileSpec.principals, p)));
      after = { ...fileAfter, principals: { ...scim, ...fileAfter.principals } };
    } catch (e) {
      if (e instanceof SpecError) throw new DatagrantError(`the spec with the revocations made does not validate, so no patch is written:\n${e.message}`);
      throw e;
    }
  }

  const intendedAfter = intendedAccess(after, now);
  const revokedIds = new Set(revoked.map((r) => r.row.id));
  for (const item of items) {
    if (item.row.principal === undefined || !item.edits.length) continue;
    const left = grantsBehind(intendedAfter, item.row);
    if (left.length && !item.manual.length) {
      warnings.push(`row ${item.n} (${describeRow(item.row)}) is still granted after the patch by ${left.map((g) => g.path).join(', ')}`);
    }
  }
  const alsoRemoved: RevocationPlan['alsoRemoved'] = [];
  for (const r of rows) {
    if (revokedIds.has(r.row.id) || r.row.principal === undefined) continue;
    const before = grantsBehind(intendedNow, r.row);
    if (!before.length || grantsBehind(intendedAfter, r.row).length) continue;
    const because = items.filter((i) => i.row.principal === r.row.principal).flatMap((i) => i.edits);
    alsoRemoved.push({ n: r.n, row: r.row, outcome: r.outcome, because: [...new Set(because)] });
    if (r.outcome.outcome === 'keep') {
      const keepers = r.decisions.filter((d) => d.decision === 'keep').map((d) => d.reviewer);
      warnings.push(
        `row ${r.n} (${describeRow(r.row)}) was decided keep by ${keepers.join(', ')}, but the patch removes it too: ${[...new Set(because)].join('; ')}`,
      );
    }
  }
  // The edits come from the spec as it is now (the grants behind each row, found again), not from
  // the paths the review recorded, which a later edit of the file may have moved.
  if (review.manifest.specSha256 !== sha256(input.specText)) {
    warnings.push(
      `${input.specFile} has changed since the review started (its sha256 was ${review.manifest.specSha256}): the edits are made against the spec as it is now`,
    );
  }

  const patch =
    outcome.text === input.specText
      ? ''
      : createTwoFilesPatch(`a/${input.specFile}`, `b/${input.specFile}`, input.specText, outcome.text, undefined, undefined, { context: 3 });
  return { items, text: outcome.text, patch, alsoRemoved, warnings };
}
