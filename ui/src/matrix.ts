// The access matrix: principals in rows, datasets in columns, the level and end of each one's
// access in the cell. It draws only the cells in view (plus the sticky header row and name column),
// so 5,000 × 500 costs what a screenful costs; filters run over typed arrays. Keyboard: the grid is
// one tab stop; arrows, Home/End (Ctrl for the corners), PageUp/PageDown move; Enter opens the
// principal (or, on a column head, the dataset). Screen readers get a grid with its full size
// (aria-rowcount/colcount), each drawn cell's position, and the active cell as the grid's
// aria-activedescendant.
interface MatrixData {
  principals: string[];
  datasets: string[];
  cells: number[];
  now: string;
}

const ROW_H = 32;
const COL_W = 124;
const HEAD_H = 40;
const FIRST_W = 200;
const LEVELS = ['', 'read', 'write', 'admin'];
const SOON_SECONDS = 30 * 86_400;

const grid = document.getElementById('matrix') as HTMLDivElement;
const status = document.getElementById('matrix-status') as HTMLParagraphElement;
const form = document.getElementById('matrix-filters') as HTMLFormElement;

let data: MatrixData;
let level: Uint8Array; // principal × dataset
let ends: Uint32Array;
let nowSeconds = 0;
/** Principal and dataset indices shown, in order. */
let rows: Uint32Array = new Uint32Array(0);
let cols: Uint32Array = new Uint32Array(0);
let minLevel = 1;
let soonOnly = false;
/** The active cell, in shown rows/columns; -1 is the header row or the name column. */
let active = { r: 0, c: 0 };
let frame = 0;

const sizer = document.createElement('div');
sizer.className = 'mx-sizer';
const layer = document.createElement('div');
layer.className = 'mx-layer';

function qualifies(i: number): boolean {
  const l = level[i]!;
  if (l < minLevel) return false;
  if (soonOnly) {
    const e = ends[i]!;
    return e !== 0 && e - nowSeconds <= SOON_SECONDS;
  }
  return true;
}

function filter(): void {
  const f = new FormData(form);
  const text = (name: string) => {
    const v = f.get(name);
    return typeof v === 'string' ? v.trim().toLowerCase() : '';
  };
  const pq = text('principal');
  const dq = text('dataset');
  minLevel = Number(f.get('level') || 1);
  soonOnly = f.get('expiring') === 'on';
  const granted = f.get('granted') === 'on';
  const nd = data.datasets.length;
  const colOk = new Uint8Array(nd);
  for (let d = 0; d < nd; d++) colOk[d] = dq === '' || data.datasets[d]!.toLowerCase().includes(dq) ? 1 : 0;
  const rowList: number[] = [];
  const colHas = new Uint8Array(nd);
  for (let p = 0; p < data.principals.length; p++) {
    if (pq !== '' && !data.principals[p]!.toLowerCase().includes(pq)) continue;
    if (!granted) {
      rowList.push(p);
      continue;
    }
    let any = false;
    const base = p * nd;
    for (let d = 0; d < nd; d++) {
      if (colOk[d] && level[base + d] && qualifies(base + d)) {
        any = true;
        colHas[d] = 1;
      }
    }
    if (any) rowList.push(p);
  }
  const colList: number[] = [];
  for (let d = 0; d < nd; d++) if (colOk[d] && (!granted || colHas[d])) colList.push(d);
  rows = Uint32Array.from(rowList);
  cols = Uint32Array.from(colList);
  active = { r: Math.min(active.r, rows.length - 1), c: Math.min(active.c, cols.length - 1) };
  sizer.style.width = `${FIRST_W + cols.length * COL_W}px`;
  sizer.style.height = `${HEAD_H + rows.length * ROW_H}px`;
  // No taller than its rows (plus room for a scroll bar), nor than most of the window.
  grid.style.height = `${Math.max(HEAD_H + ROW_H * 3, Math.min(Math.round(window.innerHeight * 0.7), HEAD_H + rows.length * ROW_H + 18))}px`;
  grid.setAttribute('aria-rowcount', String(rows.length + 1));
  grid.setAttribute('aria-colcount', String(cols.length + 1));
  status.textContent = `Showing ${rows.length.toLocaleString('en')} of ${data.principals.length.toLocaleString('en')} principals × ${cols.length.toLocaleString('en')} of ${nd.toLocaleString('en')} datasets.`;
  render();
}

const day = (seconds: number) => new Date(seconds * 1000).toISOString().slice(0, 10);

function cellText(i: number): { text: string; label: string; cls: string } {
  const l = level[i]!;
  if (!l || !qualifies(i)) return { text: '', label: 'no access', cls: 'mx-cell' };
  const e = ends[i]!;
  const soon = e !== 0 && e - nowSeconds <= SOON_SECONDS;
  return {
    text: `${LEVELS[l]}${e ? ` · ${day(e).slice(5)}` : ''}`,
    label: `${LEVELS[l]}${e ? ` until ${day(e)}` : ', no end'}`,
    cls: `mx-cell lvl-${LEVELS[l]}${soon ? ' soon' : ''}`,
  };
}

function place(el: HTMLElement, x: number, y: number, w: number, h: number): void {
  el.style.left = `${x}px`;
  el.style.top = `${y}px`;
  el.style.width = `${w}px`;
  el.style.height = `${h}px`;
}

function render(): void {
  frame = 0;
  const top = grid.scrollTop;
  const left = grid.scrollLeft;
  const r0 = Math.max(0, Math.floor(top / ROW_H));
  const r1 = Math.min(rows.length, Math.ceil((top + grid.clientHeight - HEAD_H) / ROW_H) + 1);
  const c0 = Math.max(0, Math.floor(left / COL_W));
  const c1 = Math.min(cols.length, Math.ceil((left + grid.clientWidth - FIRST_W) / COL_W) + 1);
  const nd = data.datasets.length;
  const out = document.createDocumentFragment();
  const activeId = (r: number, c: number) => `mx-${r}-${c}`;

  const head = document.createElement('div');
  head.setAttribute('role', 'row');
  head.setAttribute('aria-rowindex', '1');
  const corner = document.createElement('div');
  corner.className = 'mx-corner';
  corner.setAttribute('role', 'columnheader');
  corner.setAttribute('aria-colindex', '1');
  corner.id = activeId(-1, -1);
  corner.textContent = 'Principal';
  place(corner, left, top, FIRST_W, HEAD_H);
  head.append(corner);
  for (let c = c0; c < c1; c++) {
    const d = cols[c]!;
    const el = document.createElement('div');
    el.className = 'mx-colhead';
    el.setAttribute('role', 'columnheader');
    el.setAttribute('aria-colindex', String(c + 2));
    el.id = activeId(-1, c);
    const a = document.createElement('a');
    a.href = `/ui/datasets/${encodeURIComponent(data.datasets[d]!)}`;
    a.tabIndex = -1;
    a.textContent = data.datasets[d]!;
    a.title = data.datasets[d]!;
    el.append(a);
    place(el, FIRST_W + c * COL_W, top, COL_W, HEAD_H);
    head.append(el);
  }
  out.append(head);

  for (let r = r0; r < r1; r++) {
    const p = rows[r]!;
    const row = document.createElement('div');
    row.setAttribute('role', 'row');
    row.setAttribute('aria-rowindex', String(r + 2));
    const y = HEAD_H + r * ROW_H;
    const name = document.createElement('div');
    name.className = 'mx-rowhead';
    name.setAttribute('role', 'rowheader');
    name.setAttribute('aria-colindex', '1');
    name.id = activeId(r, -1);
    const a = document.createElement('a');
    a.href = `/ui/principals/${encodeURIComponent(data.principals[p]!)}`;
    a.tabIndex = -1;
    a.textContent = data.principals[p]!;
    a.title = data.principals[p]!;
    name.append(a);
    place(name, left, y, FIRST_W, ROW_H);
    row.append(name);
    for (let c = c0; c < c1; c++) {
      const i = p * nd + cols[c]!;
      const t = cellText(i);
      const el = document.createElement('div');
      el.className = t.cls;
      el.setAttribute('role', 'gridcell');
      el.setAttribute('aria-colindex', String(c + 2));
      el.id = activeId(r, c);
      el.textContent = t.text;
      el.title = `${data.principals[p]} on ${data.datasets[cols[c]!]}: ${t.label}`;
      if (!t.text) el.setAttribute('aria-label', t.label);
      place(el, FIRST_W + c * COL_W, y, COL_W, ROW_H);
      row.append(el);
    }
    out.append(row);
  }
  layer.replaceChildren(out);
  const current = document.getElementById(activeId(active.r, active.c));
  if (current) {
    current.classList.add('mx-active');
    grid.setAttribute('aria-activedescendant', current.id);
  } else grid.removeAttribute('aria-activedescendant');
}

function schedule(): void {
  if (!frame) frame = requestAnimationFrame(render);
}

/** Scrolls so that the active cell is clear of the sticky header row and name column. */
function reveal(): void {
  if (active.r >= 0) {
    const y = active.r * ROW_H;
    if (y < grid.scrollTop) grid.scrollTop = y;
    else if (y + ROW_H > grid.scrollTop + grid.clientHeight - HEAD_H) grid.scrollTop = y + ROW_H - (grid.clientHeight - HEAD_H);
  }
  if (active.c >= 0) {
    const x = active.c * COL_W;
    if (x < grid.scrollLeft) grid.scrollLeft = x;
    else if (x + COL_W > grid.scrollLeft + grid.clientWidth - FIRST_W) grid.scrollLeft = x + COL_W - (grid.clientWidth - FIRST_W);
  }
  render();
}

function onKey(e: KeyboardEvent): void {
  const page = Math.max(1, Math.floor((grid.clientHeight - HEAD_H) / ROW_H) - 1);
  const lastR = rows.length - 1;
  const lastC = cols.length - 1;
  const { r, c } = active;
  let next: { r: number; c: number } | undefined;
  switch (e.key) {
    case 'ArrowDown':
      next = { r: Math.min(lastR, r + 1), c };
      break;
    case 'ArrowUp':
      next = { r: Math.max(-1, r - 1), c };
      break;
    case 'ArrowRight':
      next = { r, c: Math.min(lastC, c + 1) };
      break;
    case 'ArrowLeft':
      next = { r, c: Math.max(-1, c - 1) };
      break;
    case 'PageDown':
      next = { r: Math.min(lastR, r + page), c };
      break;
    case 'PageUp':
      next = { r: Math.max(0, r - page), c };
      break;
    case 'Home':
      next = e.ctrlKey ? { r: 0, c: -1 } : { r, c: -1 };
      break;
    case 'End':
      next = e.ctrlKey ? { r: lastR, c: lastC } : { r, c: lastC };
      break;
    case 'Enter': {
      const link = document.getElementById(r === -1 ? `mx--1-${c}` : `mx-${r}--1`)?.querySelector('a');
      if (link) link.click();
      e.preventDefault();
      return;
    }
    default:
      return;
  }
  e.preventDefault();
  active = next;
  reveal();
}

function indexCells(): void {
  const np = data.principals.length;
  const nd = data.datasets.length;
  level = new Uint8Array(np * nd);
  ends = new Uint32Array(np * nd);
  const cells = data.cells;
  for (let k = 0; k + 3 < cells.length; k += 4) {
    const i = cells[k]! * nd + cells[k + 1]!;
    level[i] = cells[k + 2]!;
    ends[i] = cells[k + 3]!;
  }
  nowSeconds = Math.floor(Date.parse(data.now) / 1000);
}

async function load(): Promise<void> {
  const res = await fetch(grid.dataset.src ?? '/ui/data/matrix', { headers: { accept: 'application/json' }, credentials: 'same-origin' });
  if (res.status === 401) {
    location.assign(`/ui/signin?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if (!res.ok) throw new Error(`the matrix data answered HTTP ${res.status}`);
  const text = await res.text();
  // The measure starts once the data is here: parse, index, filter and the first frame drawn.
  const arrived = performance.now();
  data = JSON.parse(text) as MatrixData;
  indexCells();
  grid.append(sizer, layer);
  filter();
  requestAnimationFrame(() =>
    requestAnimationFrame(() => {
      document.documentElement.dataset.matrixRenderMs = String(Math.round(performance.now() - arrived));
    }),
  );
  grid.addEventListener('scroll', schedule, { passive: true });
  grid.addEventListener('keydown', onKey);
  grid.addEventListener('click', (e) => {
    const el = (e.target as HTMLElement).closest<HTMLElement>('[id^="mx-"]');
    const m = el && /^mx-(-?\d+)-(-?\d+)$/.exec(el.id);
    if (m) {
      active = { r: Number(m[1]), c: Number(m[2]) };
      render();
    }
  });
  window.addEventListener('resize', schedule);
  let pending = 0;
  form.addEventListener('input', () => {
    clearTimeout(pending);
    pending = window.setTimeout(filter, 120);
  });
  form.addEventListener('submit', (e) => e.preventDefault());
}

load().catch((e: unknown) => {
  status.textContent = `The matrix could not be loaded: ${(e as Error).message}`;
  status.classList.add('error');
});

export {};
