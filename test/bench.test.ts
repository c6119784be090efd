// The benchmark must keep working: one short round of its transfer, 401 and small-request sections (against
// the registry and proxy-bound; nginx, the registry and berth all started by it), checked for a table with a
// number in every cell.
// Its numbers mean nothing here; `npm run bench` is where they are measured.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

test('npm run bench runs end to end and prints its table (one short round)', { timeout: 180_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../bench/run.ts', import.meta.url)), '--only', 'transfer,401,small,static'], {
    env: { ...process.env, ROUNDS: '1', SECONDS: '1', BLOB_MB: '8' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { err += c })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  assert.equal(code, 0, err)
  for (const row of ['download (GET)', 'monolithic upload', 'chunked upload', 'GET /v2/, apr1 user: req/s', 'HEAD manifest, apr1 user: req/s', 'berth: bcrypt user / apr1 user', 'proxy CPU per request, us']) {
    const line = out.split('\n').find((l) => l.startsWith(`| ${row}`))
    assert.ok(line !== undefined, `row ${row} in:\n${out}`)
    assert.match(line, /\*\*\d+\.\d\dx\*\*/, `a ratio in: ${line}`)
  }
  const proxyBound = out.split('\n').findIndex((l) => l.includes('against an upstream answering from memory'))
  assert.ok(proxyBound > 0, `the proxy-bound rows in:\n${out}`)
  assert.match(out.split('\n')[proxyBound + 1], /^\| GET \/v2\/, apr1 user: req\/s .*\*\*\d+\.\d\dx\*\*/)
})
