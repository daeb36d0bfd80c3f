// The operator guides cannot rot: every metric the alert rules name exists in the source, every
// guide the README links exists, and the commands the guides tell operators to run are commands.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';

const ROOT = join(import.meta.dirname, '../..');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every metric registered in src: the first argument of `.counter(`, `.gauge(` or `.histogram(`. */
function registeredMetrics(): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of sourceFiles('src')) {
    for (const m of read(f).matchAll(/\.(counter|gauge|histogram)\(\s*'([a-z_:][a-z0-9_:]*)'/g)) out.set(m[2]!, m[1]!);
  }
  return out;
}

/** The metric a series name belongs to: a histogram's `_bucket`, `_sum` and `_count` are its own. */
function metricOf(series: string, metrics: Map<string, string>): string | undefined {
  if (metrics.has(series)) return series;
  const base = series.replace(/_(bucket|sum|count)$/, '');
  return metrics.get(base) === 'histogram' ? base : undefined;
}

describe('docs/production.md', () => {
  const doc = read('docs/production.md');
  const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const rules = blocks.map((b) => parse(b) as { groups?: { rules: { alert: string; expr: string }[] }[] }).find((y) => y?.groups);

  test('has a Prometheus rules block that parses, with alerts', () => {
    expect(rules?.groups?.[0]?.rules.length).toBeGreaterThan(0);
  });

  test('every datagrant metric an alert names is registered in the source, with the labels it filters on', () => {
    const metrics = registeredMetrics();
    expect(metrics.get('datagrant_reconcile_duration_seconds')).toBe('histogram');
    const problems: string[] = [];
    for (const r of rules!.groups!.flatMap((g) => g.rules)) {
      const names = [...String(r.expr).matchAll(/\bdatagrant_[a-z0-9_]+/g)].map((m) => m[0]);
      // Prometheus's own `up` is the one series an alert may name without datagrant's.
      if (!/\bup\{/.test(String(r.expr))) expect(names.length, `${r.alert} names no datagrant metric`).toBeGreaterThan(0);
      for (const n of names) if (!metricOf(n, metrics)) problems.push(`${r.alert}: ${n} is not a metric datagrant registers`);
    }
    expect(problems).toEqual([]);
  });

  test('the labels alerts filter on are the ones the source sets', () => {
    const scim = read('src/scim/server.ts');
    expect(scim).toMatch(/requests\.inc\(\{ method: .*, route: .*, status: /);
    const sessions = read('src/serve/credentials.ts');
    for (const outcome of doc.match(/outcome=~"([^"]+)"/)![1]!.split('|')) expect(sessions).toContain(`'${outcome}'`);
  });

  test('the metrics table lists every metric datagrant registers', () => {
    for (const name of registeredMetrics().keys()) expect(doc, name).toContain(`\`${name}\``);
  });
});

describe('the operator guides', () => {
  const guides = ['docs/okta.md', 'docs/entra.md', 'docs/production.md', 'docs/runbook-key-leak.md'];

  test('the README links each guide under "Operating datagrant", and its newcomer commands stay two', () => {
    const readme = read('README.md');
    const section = readme.slice(readme.indexOf('## Operating datagrant'), readme.indexOf('## Development'));
    for (const g of guides) {
      expect(section).toContain(`(${g})`);
      expect(existsSync(join(ROOT, g)), g).toBe(true);
    }
    const twoCommands = readme.slice(readme.indexOf('## Two commands'), readme.indexOf('## Using it'));
    const sh = /```sh\n([\s\S]*?)```/.exec(twoCommands)![1]!;
    expect(sh.split('\n').filter((l) => /^\S/.test(l))).toEqual([expect.stringMatching(/^npm run demo/), expect.stringMatching(/^npm test/)]);
  });

  test('every `datagrant <command>` the guides name is a command of the CLI', () => {
    const main = read('src/cli/main.ts');
    const commands = new Set([...main.matchAll(/\.command\('([a-z-]+)'\)/g)].map((m) => m[1]!));
    // In code: `datagrant x …` inline, or a line of a shell block that starts with it.
    const named = new Set(guides.flatMap((g) => [...read(g).matchAll(/(?:`|^)datagrant ([a-z][a-z-]*)/gm)].map((m) => m[1]!)));
    expect(named.has('iam-policy') && named.has('credentials') && named.has('audit')).toBe(true);
    expect([...named].filter((c) => !commands.has(c))).toEqual([]);
  });
});
