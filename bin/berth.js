#!/usr/bin/env node
// In a checkout (npm start, npx berth after npm ci) berth runs from its TypeScript sources through tsx,
// so an old build can never shadow the code being edited. The Docker image ships no sources: it runs the
// compiled build as one bundle (dist/bundle, scripts/bundle.mjs), and loads tsx only if a custom plugin
// is written in TypeScript (src/user-plugins.ts). `berth start` first holds back two of V8's habits that
// would keep memory an idle berth does not need (src/lean-start.ts): before the CLI loads, since loading
// it is what they would respond to.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const sources = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const start = process.argv[2] === 'start'
let cli
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api')
  register()
  process.env.BERTH_TSX = '1'
  if (start) (await import('../src/lean-start.ts')).beginLeanStart()
  cli = await import('../src/cli.ts')
} else {
  if (start) (await import('../dist/bundle/lean-start.js')).beginLeanStart()
  cli = await import('../dist/bundle/cli.js')
}
const code = await cli.main(process.argv.slice(2))
if (code >= 0) process.exitCode = code
