#!/usr/bin/env node
// In a checkout (npm start, npx berth after npm ci) berth runs from its TypeScript sources through tsx,
// so an old build can never shadow the code being edited. The Docker image ships no sources: it runs
// the compiled dist/, and still registers tsx so that custom plugins may be written in TypeScript.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { register } from 'tsx/esm/api'

register()
const sources = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const cli = existsSync(sources) ? await import('../src/cli.ts') : await import('../dist/src/cli.js')
const code = await cli.main(process.argv.slice(2))
if (code >= 0) process.exitCode = code
