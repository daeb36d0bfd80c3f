// Charts for the web console, as inline SVG drawn on the server: no script, no chart library, no
// inline style (the console's Content-Security-Policy allows neither), colours from the console's
// stylesheet so that dark mode applies. Each chart carries its numbers as a table too, for screen
// readers and for anyone who would rather read them. Pure.
import { esc } from './html.js';

export interface Bar {
  /** Under the bar (short: a week, an age band). */
  label: string;
  value: number;
  /** What the bar is, in words, for its tooltip and the table (`3 grants end in the week of 12-07`). */
  title: string;
}

export interface BarChart {
  /** Unique in the page: names the SVG's title and description. */
  id: string;
  title: string;
  /** One sentence saying what the chart shows. */
  description: string;
  bars: Bar[];
  /** What a value counts (`grants`, `keys`): the table's column head. */
  unit: string;
  /** Stylesheet class of the bars (colour). */
  tone?: 'accent' | 'warn';
}

const WIDTH = 640;
const HEIGHT = 220;
const LEFT = 36;
const BOTTOM = 40;
const TOP = 12;

/** A bar chart with its data table (visually hidden) and a line saying what it shows. */
export function barChart(c: BarChart): string {
  const max = Math.max(1, ...c.bars.map((b) => b.value));
  // Whole-number ticks: 0, the middle, the top, rounded up so the top bar never touches the edge.
  const top = max <= 4 ? max : Math.ceil(max / 4) * 4;
  const plotH = HEIGHT - TOP - BOTTOM;
  const slot = (WIDTH - LEFT) / Math.max(1, c.bars.length);
  const barW = Math.max(4, slot * 0.7);
  const y = (v: number) => TOP + plotH - (v / top) * plotH;
  const ticks = [...new Set([0, Math.round(top / 2), top])];
  const grid = ticks
    .map(
      (t) =>
        `<line class="grid" x1="${LEFT}" x2="${WIDTH}" y1="${y(t)}" y2="${y(t)}"/><text class="tick" x="${LEFT - 6}" y="${y(t) + 4}" text-anchor="end">${t}</text>`,
    )
    .join('');
  // Every label when they fit, else every other one (90 days in weeks: 13 labels fit).
  const every = slot < 34 ? 2 : 1;
  const bars = c.bars
    .map((b, i) => {
      const x = LEFT + i * slot + (slot - barW) / 2;
      const h = Math.max(b.value > 0 ? 2 : 0, (b.value / top) * plotH);
      const label = i % every === 0 ? `<text class="label" x="${x + barW / 2}" y="${HEIGHT - BOTTOM + 16}" text-anchor="middle">${esc(b.label)}</text>` : '';
      const value = b.value > 0 ? `<text class="value" x="${x + barW / 2}" y="${y(b.value) - 4}" text-anchor="middle">${b.value}</text>` : '';
      return `<g><rect class="bar ${c.tone ?? 'accent'}" x="${x.toFixed(1)}" y="${(TOP + plotH - h).toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}"><title>${esc(b.title)}</title></rect>${value}${label}</g>`;
    })
    .join('');
  const total = c.bars.reduce((n, b) => n + b.value, 0);
  return `<figure class="chart">
<figcaption><strong>${esc(c.title)}</strong> <span class="muted">${esc(c.description)}</span></figcaption>
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${c.id}-t ${c.id}-d" preserveAspectRatio="xMidYMid meet"><title id="${c.id}-t">${esc(c.title)}</title><desc id="${c.id}-d">${esc(`${c.description} ${total} ${c.unit} in all.`)}</desc>${grid}${bars}</svg>
<table class="visually-hidden"><caption>${esc(c.title)}</caption><thead><tr><th scope="col">When</th><th scope="col">${esc(c.unit)}</th></tr></thead><tbody>${c.bars
    .map((b) => `<tr><th scope="row">${esc(b.title)}</th><td>${b.value}</td></tr>`)
    .join('')}</tbody></table>
</figure>`;
}

const DAY = 86_400_000;

/** Grants ending in each of the next 13 weeks (91 days) from `now`. */
export function expiringBars(ends: readonly string[], now: Date): Bar[] {
  const start = now.getTime();
  const bars: Bar[] = [];
  for (let w = 0; w < 13; w++) {
    const from = new Date(start + w * 7 * DAY);
    const label = from.toISOString().slice(5, 10);
    bars.push({ label, value: 0, title: `week from ${from.toISOString().slice(0, 10)}` });
  }
  for (const e of ends) {
    const at = Date.parse(e);
    if (!(at > start)) continue;
    const w = Math.floor((at - start) / (7 * DAY));
    if (w < 13) bars[w]!.value++;
  }
  for (const b of bars) b.title = `${b.value} ${b.value === 1 ? 'grant ends' : 'grants end'} in the ${b.title}`;
  return bars;
}

/** Age bands for stored keys, as rotation policies usually draw the lines. */
const AGE_BANDS: [label: string, upToDays: number][] = [
  ['< 7 d', 7],
  ['7–30 d', 30],
  ['30–90 d', 90],
  ['90–180 d', 180],
  ['180–365 d', 365],
  ['> 1 y', Infinity],
];

/** Stored credentials by age at `now`. */
export function keyAgeBars(createdAt: readonly string[], now: Date): Bar[] {
  const bars = AGE_BANDS.map(([label]) => ({ label, value: 0, title: '' }));
  for (const c of createdAt) {
    const days = (now.getTime() - Date.parse(c)) / DAY;
    const i = AGE_BANDS.findIndex(([, upTo]) => days < upTo);
    bars[i === -1 ? bars.length - 1 : i]!.value++;
  }
  bars.forEach((b, i) => (b.title = `${b.value} ${b.value === 1 ? 'key' : 'keys'} aged ${AGE_BANDS[i]![0]}`));
  return bars;
}
