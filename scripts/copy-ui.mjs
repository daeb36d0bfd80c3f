// The console's stylesheet beside its compiled scripts (dist/ui), where `serve` reads its assets.
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist/ui', { recursive: true });
copyFileSync('ui/console.css', 'dist/ui/console.css');
