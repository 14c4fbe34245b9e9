// Copies the uPlot distribution files the dashboard loads at run time into vendor/
// (embedded in the Go binary; no CDN, no network at run time).
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const files = [
  ['node_modules/uplot/dist/uPlot.iife.min.js', 'vendor/uPlot.iife.min.js'],
  ['node_modules/uplot/dist/uPlot.min.css', 'vendor/uPlot.min.css'],
  ['node_modules/uplot/LICENSE', 'vendor/uPlot.LICENSE'],
];
mkdirSync(join(root, 'vendor'), { recursive: true });
for (const [from, to] of files) {
  copyFileSync(join(root, from), join(root, to));
  console.log(`vendor: ${from} -> ${to}`);
}
