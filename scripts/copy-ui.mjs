// The console's stylesheet and icon beside its compiled scripts (dist/ui), where `serve` reads its assets.
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist/ui', { recursive: true });
for (const file of ['console.css', 'favicon.svg']) copyFileSync(`ui/${file}`, `dist/ui/${file}`);
