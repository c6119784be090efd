#!/usr/bin/env node
// Runs the compiled CLI (the Docker image) or, in a checkout without a build, the TypeScript sources
// through tsx (npm start, npx berth after npm ci).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const compiled = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url))
let cli
if (existsSync(compiled)) {
  cli = await import(compiled)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  cli = await import('../src/cli.ts')
}
const code = await cli.main(process.argv.slice(2))
if (code >= 0) process.exitCode = code
