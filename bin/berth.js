#!/usr/bin/env node
// In a checkout (npm start, npx berth after npm ci) berth runs from its TypeScript sources through tsx,
// so an old build can never shadow the code being edited. The Docker image ships no sources: it runs
// the compiled build as one bundle (dist/bundle, scripts/bundle.mjs), and loads tsx only if a custom
// plugin is written in TypeScript (src/user-plugins.ts).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const sources = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
let cli
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api')
  register()
  process.env.BERTH_TSX = '1'
  cli = await import('../src/cli.ts')
} else {
  cli = await import('../dist/bundle/cli.js')
}
const code = await cli.main(process.argv.slice(2))
if (code >= 0) process.exitCode = code
