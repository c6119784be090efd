// The benchmark must keep working: one short round of every section with tiny sizes (the registry, the
// peers and berth all started by it), checked for a table with a number in every row that has one.
// Its numbers mean nothing here; `npm run bench` is where they are measured.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

test('npm run bench runs every section end to end and prints its table (one tiny round)', { timeout: 300_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../bench/run.ts', import.meta.url)), '--only', 'transfer,small,static,401,skopeo,cache,memory,token,workers,placement,distant'], {
    env: { ...process.env, ROUNDS: '1', SECONDS: '0.5', BLOB_MB: '4', IMAGE_MB: '1', MEMORY_MB: '8', DOWNLOADS: '10', SETTLE_S: '1', BCRYPT_COST: '4', BENCH_CURL_MAX_TIME: '30' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { err += c })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  assert.equal(code, 0, err)
  const lines = out.split('\n')
  const rowOf = (name: string) => lines.find((l) => l.startsWith(`| ${name}`)) ?? assert.fail(`row ${name} in:\n${out}`)
  for (const name of ['download (GET)', 'monolithic upload', 'chunked upload', 'GET /v2/, apr1 user: req/s', 'HEAD manifest, apr1 user: req/s',
    'GET /v2/, bcrypt user: req/s', 'berth: bcrypt user / apr1 user', 'proxy CPU per request, us', 'push', 'pull', 'berth with `cache`',
    'download: the proxy\'s CPU seconds', 'monolithic upload: the proxy\'s CPU seconds', 'chunked upload: the proxy\'s CPU seconds',
    'the same, the first 0.5 s after idle', 'the same, a bare Node.js `https` server', 'the same, bare Fastify',
    'seconds (berth with `cache`)', 'blob GETs that reached the registry']) {
    assert.match(rowOf(name), /\*\*\d+\.\d\dx\*\*/, `a ratio in: ${rowOf(name)}`)
  }
  assert.match(rowOf('median of'), /\| nginx \| nginx-tuned \| caddy \| haproxy \| berth \| berth \/ best peer \|/)
  assert.match(rowOf("download: berth's CPU seconds"), /\d+ %/)
  const proxyBound = lines.findIndex((l) => l.includes('against an upstream answering from memory'))
  assert.ok(proxyBound > 0, `the proxy-bound rows in:\n${out}`)
  assert.match(lines[proxyBound + 1], /^\| GET \/v2\/, apr1 user: req\/s .*\*\*\d+\.\d\dx\*\*/)
  // Token mode against edge mode: a ratio per row, and the token requests berth answered.
  for (const name of ['one 1 MB layer', '5 layers, 5 MB', 'HEAD manifest, 32 connections', 'the same, berth\'s CPU per request']) assert.match(rowOf(name), /\*\*\d+\.\d\dx\*\*/, rowOf(name))
  assert.match(rowOf('token requests berth answered'), /\| - \| [1-9]\d* \|/)
  // workers: 2 against one worker and the peers; three replicas with and without cache placement.
  for (const name of ['GET /v2/ (apr1 user): req/s', '401 path (no credentials): req/s', 'MB read from the registry', 'pull seconds, median']) assert.match(rowOf(name), /\*\*\d+\.\d\dx\*\*/, rowOf(name))
  for (const name of ['first pull (fills the caches)', 'repeated pull, median of 1']) assert.match(rowOf(name), /(\| \d+\.\d\d ){3}\| \*\*\d+\.\d\dx\*\*/, rowOf(name))
  assert.match(rowOf('proxy-bound, 32 connections'), /\| berth, 1 worker \| berth, workers: 2 \| nginx \| haproxy \|/)
  for (const name of ['idle RSS of berth as one process', 'the same, 1 s after start']) assert.match(rowOf(name), /\| \d+ \| <= 64 \|$/, rowOf(name))
  assert.match(rowOf('10 concurrent downloads'), /^\| 10 concurrent downloads of a 16 MiB blob( \| \d+\.\d){5} \|/)
})
