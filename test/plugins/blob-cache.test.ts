// The blob cache (plugins/blob-cache.ts) through berth, against an in-process registry stand-in that
// knows which repository holds which blob: fill on a download, hits from disk with Range, the per-repository
// confirmation, digest checks, one fill for concurrent misses, LRU eviction, a restart, and access rules.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import { startBerth, startUpstream, request, tempDir, waitFor, adminGet, type Berth, type ConfigInput } from '../helper.js'
import { parseRange } from '../../src/cache/serve.js'

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`

interface Registry { url: string, seen: string[], blobs: Map<string, Buffer>, repos: Map<string, Set<string>>, corrupt: Set<string>, delay: number, close: () => Promise<void> }

/** Serves GET/HEAD /v2/<repo>/blobs/<digest> for the blobs each repository holds, 404 otherwise. */
async function registry (t: Parameters<typeof startBerth>[0]): Promise<Registry> {
  const r: Registry = { url: '', seen: [], blobs: new Map(), repos: new Map(), corrupt: new Set(), delay: 0, close: async () => {} }
  const up = await startUpstream((req: IncomingMessage, res) => {
    r.seen.push(`${req.method} ${req.url}`)
    const m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '')
    const blob = m === null ? undefined : r.blobs.get(m[2])
    if (m === null || blob === undefined || r.repos.get(m[1])?.has(m[2]) !== true) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}')
      return
    }
    const body = r.corrupt.has(m[2]) ? Buffer.from(blob).fill(0x41, 0, 1) : blob
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'docker-content-digest': m[2] })
      res.end(req.method === 'HEAD' ? undefined : body)
    }, r.delay)
  })
  r.url = up.url
  r.close = () => up.close()
  t.after(() => up.close())
  return r
}

function add (r: Registry, repo: string, size: number): { digest: string, blob: Buffer } {
  const blob = randomBytes(size)
  const digest = digestOf(blob)
  r.blobs.set(digest, blob)
  if (!r.repos.has(repo)) r.repos.set(repo, new Set())
  r.repos.get(repo)?.add(digest)
  return { digest, blob }
}

const cacheConfig = (dir: string, maxSize = '1m'): ConfigInput => ({ cache: { dir, maxSize } })
const gets = (r: Registry, method = 'GET') => r.seen.filter((s) => s.startsWith(`${method} `)).length

async function filled (berth: Berth, count: number): Promise<void> {
  await waitFor(() => berth.app.blobCache?.count === count, 5000, `${count} cached blobs`)
}

/** A registry holding one blob of `size` bytes in team/app, and a berth with a cache that one download filled. */
async function cachedOnce (t: Parameters<typeof startBerth>[0], size: number): Promise<{ r: Registry, berth: Berth, digest: string, blob: Buffer }> {
  const r = await registry(t)
  const { digest, blob } = add(r, 'team/app', size)
  const berth = await startBerth(t, [r.url], cacheConfig(tempDir(t)))
  await request(berth, `/v2/team/app/blobs/${digest}`)
  await filled(berth, 1)
  return { r, berth, digest, blob }
}

test('a blob download fills the cache; the next GET and HEAD are answered from disk like the registry would', async (t) => {
  const r = await registry(t)
  const { digest, blob } = add(r, 'team/app', 300_000)
  const berth = await startBerth(t, [r.url], { ...cacheConfig(tempDir(t)), admin: { port: 0 } })
  const first = await request(berth, `/v2/team/app/blobs/${digest}`)
  assert.equal(first.status, 200)
  assert.ok(first.body.equals(blob))
  await filled(berth, 1)
  const second = await request(berth, `/v2/team/app/blobs/${digest}`)
  assert.equal(second.status, 200)
  assert.ok(second.body.equals(blob))
  assert.equal(second.headers['docker-content-digest'], digest)
  assert.equal(second.headers['content-length'], String(blob.length))
  assert.equal(second.headers['content-type'], 'application/octet-stream')
  assert.equal(second.headers['accept-ranges'], 'bytes')
  assert.equal(second.headers['docker-distribution-api-version'], 'registry/2.0')
  const head = await request(berth, `/v2/team/app/blobs/${digest}`, { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal(head.headers['content-length'], String(blob.length))
  assert.equal(head.body.length, 0)
  assert.deepEqual(r.seen, [`GET /v2/team/app/blobs/${digest}`], 'the registry was asked once')
  assert.equal(readFileSync(join(berth.app.blobCache?.path(digest) ?? '')).equals(blob), true)
  assert.match(berth.accessLog(), new RegExp(`"GET /v2/team/app/blobs/${digest} HTTP/1.1" 200 ${blob.length} .* upstream=cache`))
  assert.deepEqual({ ...berth.app.blobCache?.stats }, { hits: 2, misses: 1, followers: 0, fills: 1, rejected: 0, skipped: 0, evictions: 0, writeErrors: 0 })
  const metrics = (await adminGet(berth, '/metrics')).body
  assert.match(metrics, /^berth_cache_requests_total\{result="hit"\} 2$/m)
  assert.match(metrics, /^berth_cache_requests_total\{result="miss"\} 1$/m)
  assert.match(metrics, /^berth_cache_fills_total\{outcome="kept"\} 1$/m)
  assert.match(metrics, new RegExp(`^berth_cache_bytes ${blob.length}$`, 'm'))
})

test('Range on a cached blob: 206 with exactly the bytes asked, 416 past the end', async (t) => {
  const { r, berth, digest, blob } = await cachedOnce(t, 10_000)
  const path = `/v2/team/app/blobs/${digest}`
  const part = await request(berth, path, { headers: { range: 'bytes=100-199' } })
  assert.equal(part.status, 206)
  assert.equal(part.headers['content-range'], 'bytes 100-199/10000')
  assert.ok(part.body.equals(blob.subarray(100, 200)))
  const tail = await request(berth, path, { headers: { range: 'bytes=9990-' } })
  assert.ok(tail.body.equals(blob.subarray(9990)))
  const suffix = await request(berth, path, { headers: { range: 'bytes=-5' } })
  assert.ok(suffix.body.equals(blob.subarray(9995)))
  const past = await request(berth, path, { headers: { range: 'bytes=10000-' } })
  assert.equal(past.status, 416)
  assert.equal(past.headers['content-range'], 'bytes */10000')
  assert.equal(gets(r), 1)
  assert.deepEqual(parseRange('bytes=0-0,5-6', 10), null, 'several ranges: the whole blob')
  assert.deepEqual(parseRange('items=0-1', 10), null)
  assert.deepEqual(parseRange('bytes=5-100', 10), { start: 5, end: 9 })
  assert.equal(parseRange('bytes=-0', 10), 'unsatisfiable')
})

/** A GET read `chunkDelay` ms per chunk (a slow client), or dropped after its first chunk. */
async function slowGet (berth: Berth, path: string, opts: { chunkDelay?: number, dropAfterFirst?: boolean, range?: string } = {}): Promise<Buffer | 'dropped'> {
  const mod = berth.url.startsWith('https') ? https : http
  return await new Promise((resolve, reject) => {
    const req = mod.get(`${berth.url}${path}`, { ca: berth.ca, servername: 'localhost', agent: false, headers: opts.range === undefined ? {} : { range: opts.range } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => {
        if (opts.dropAfterFirst === true) { req.destroy(); resolve('dropped'); return }
        chunks.push(c)
        if (opts.chunkDelay !== undefined) { res.pause(); setTimeout(() => res.resume(), opts.chunkDelay) }
      })
      res.on('end', () => { resolve(Buffer.concat(chunks)) })
      res.on('error', reject)
    })
    req.on('error', (err) => { if (opts.dropAfterFirst !== true) reject(err) })
  })
}

test('a copy of many reads goes out whole and in order to fast, slow, ranged and vanishing clients at once (read buffers are reused)', async (t) => {
  const size = (3 << 20) + 12345 // a dozen reads, the last one short
  const r = await registry(t)
  const { digest, blob } = add(r, 'team/app', size)
  const berth = await startBerth(t, [r.url], cacheConfig(tempDir(t), '64m'))
  const path = `/v2/team/app/blobs/${digest}`
  assert.ok((await request(berth, path)).body.equals(blob))
  await filled(berth, 1)
  const [fast, slow, ranged, dropped, fast2] = await Promise.all([
    slowGet(berth, path),
    slowGet(berth, path, { chunkDelay: 2 }),
    slowGet(berth, path, { range: 'bytes=300001-2900000', chunkDelay: 1 }),
    slowGet(berth, path, { dropAfterFirst: true }),
    slowGet(berth, path)
  ])
  assert.equal(dropped, 'dropped')
  for (const [name, got] of [['fast', fast], ['slow', slow], ['fast2', fast2]] as const) {
    assert.ok(Buffer.isBuffer(got) && got.equals(blob), `${name}: ${Buffer.isBuffer(got) ? got.length : got} bytes, whole and in order`)
  }
  assert.ok(Buffer.isBuffer(ranged) && ranged.equals(blob.subarray(300001, 2900001)), 'the range')
  assert.equal(berth.app.blobCache?.stats.hits, 5)
  assert.equal(gets(r), 1, 'every later GET from the copy')
  // Still serving after a client went mid-body.
  assert.ok((await request(berth, path)).body.equals(blob))
})

test('another repository gets a cached blob only once the upstream confirms it holds it (HEAD, remembered)', async (t) => {
  const { r, berth, digest, blob } = await cachedOnce(t, 5000)
  r.seen.length = 0
  // other/secret does not hold it: the registry's 404 comes through, never the cached copy
  const refused = await request(berth, `/v2/other/secret/blobs/${digest}`)
  assert.equal(refused.status, 404)
  assert.match(refused.body.toString(), /BLOB_UNKNOWN/)
  assert.deepEqual(r.seen, [`HEAD /v2/other/secret/blobs/${digest}`, `GET /v2/other/secret/blobs/${digest}`])
  // other/holder does: one HEAD, then the copy; the second time not even the HEAD
  r.repos.set('other/holder', new Set([digest]))
  r.seen.length = 0
  for (let i = 0; i < 2; i++) {
    const res = await request(berth, `/v2/other/holder/blobs/${digest}`)
    assert.equal(res.status, 200)
    assert.ok(res.body.equals(blob))
  }
  assert.deepEqual(r.seen, [`HEAD /v2/other/holder/blobs/${digest}`])
})

/** Passes when the request was cut off; fails naming the answer when one came instead. */
async function cut (pending: Promise<{ status: number, body: Buffer }>): Promise<void> {
  const outcome = await pending.then((res) => res, (err: Error) => err)
  if (outcome instanceof Error) { assert.match(outcome.message, /aborted|ECONNRESET|socket hang up/); return }
  assert.fail(`an answer instead of a cut: ${outcome.status}, ${outcome.body.length} bytes: ${outcome.body.subarray(0, 200).toString()}`)
}

test('a body that does not match its digest is cut, never a clean answer, and never cached', async (t) => {
  const r = await registry(t)
  const { digest } = add(r, 'team/app', 4000)
  r.corrupt.add(digest)
  const berth = await startBerth(t, [r.url], cacheConfig(tempDir(t)))
  await cut(request(berth, `/v2/team/app/blobs/${digest}`))
  await waitFor(() => berth.app.blobCache?.stats.rejected === 1, 5000, 'the fill rejected')
  assert.equal(berth.app.blobCache?.count, 0)
  await cut(request(berth, `/v2/team/app/blobs/${digest}`))
  assert.equal(gets(r), 2, 'the second GET went to the registry again')
})

test('a 404 for another repository, seen before the blob is cached, never confirms that repository', async (t) => {
  const r = await registry(t)
  const { digest } = add(r, 'team/app', 4000)
  const berth = await startBerth(t, [r.url], cacheConfig(tempDir(t)))
  assert.equal((await request(berth, `/v2/team/other/blobs/${digest}`)).status, 404, 'before the fill')
  assert.equal((await request(berth, `/v2/team/app/blobs/${digest}`)).status, 200)
  await filled(berth, 1)
  r.seen.length = 0
  assert.equal((await request(berth, `/v2/team/other/blobs/${digest}`)).status, 404, 'after the fill: still the registry\'s 404')
  assert.deepEqual(r.seen, [`HEAD /v2/team/other/blobs/${digest}`, `GET /v2/team/other/blobs/${digest}`])
})

test('concurrent misses for one blob fill the cache once, and every client gets the whole blob', async (t) => {
  const r = await registry(t)
  const { digest, blob } = add(r, 'team/app', 2_000_000)
  r.delay = 50
  const berth = await startBerth(t, [r.url], cacheConfig(tempDir(t), '10m'))
  const all = await Promise.all([1, 2, 3, 4].map(() => request(berth, `/v2/team/app/blobs/${digest}`)))
  for (const res of all) assert.ok(res.body.equals(blob))
  await filled(berth, 1)
  assert.equal(gets(r), 1, 'the registry sent the blob once')
  assert.equal(berth.app.blobCache?.stats.fills, 1)
  assert.equal(berth.app.blobCache?.stats.rejected, 0)
})

test('least recently used copies go when maxSize is reached; a restart finds the copies still there', async (t) => {
  const r = await registry(t)
  const a = add(r, 'team/app', 1000)
  const b = add(r, 'team/app', 1000)
  const c = add(r, 'team/app', 1000)
  const dir = tempDir(t)
  const berth = await startBerth(t, [r.url], cacheConfig(dir, '2500'))
  const get = (berthX: Berth, d: string) => request(berthX, `/v2/team/app/blobs/${d}`)
  await get(berth, a.digest)
  await filled(berth, 1)
  await get(berth, b.digest)
  await filled(berth, 2)
  await get(berth, a.digest) // a is now the most recently used
  await get(berth, c.digest)
  await waitFor(() => berth.app.blobCache?.stats.evictions === 1, 5000, 'an eviction')
  await waitFor(() => berth.app.blobCache?.sizeOf(c.digest) !== undefined, 5000, 'c kept')
  const cache = berth.app.blobCache
  assert.ok(cache !== null && cache !== undefined)
  assert.equal(existsSync(cache.path(b.digest)), false, 'the least recently used went')
  assert.equal(existsSync(cache.path(a.digest)), true)
  assert.equal(existsSync(cache.path(c.digest)), true)
  assert.equal(cache.size, 2000)
  await berth.close()
  // a new process on the same directory: the copies are there; confirmations are asked again
  const again = await startBerth(t, [r.url], cacheConfig(dir, '2500'))
  assert.equal(again.app.blobCache?.count, 2)
  r.seen.length = 0
  const res = await get(again, a.digest)
  assert.ok(res.body.equals(a.blob))
  assert.deepEqual(r.seen, [`HEAD /v2/team/app/blobs/${a.digest}`])
})

test('access rules run before the cache: a cached blob is refused to whoever may not pull it', async (t) => {
  const r = await registry(t)
  const { digest, blob } = add(r, 'private/app', 2000)
  r.repos.set('public/app', new Set([digest]))
  const dir = tempDir(t)
  const file = join(dir, 'htpasswd')
  writeFileSync(file, execFileSync('htpasswd', ['-nbB', '-C', '4', 'alice', 'alice-pw'], { encoding: 'utf8' }))
  const berth = await startBerth(t, [r.url], { auth: { htpasswd: file, anonymous: { repositories: ['public/**'], actions: ['pull'] } }, ...cacheConfig(join(dir, 'cache')) })
  const alice = { authorization: `Basic ${Buffer.from('alice:alice-pw').toString('base64')}` }
  assert.equal((await request(berth, `/v2/private/app/blobs/${digest}`, { headers: alice })).status, 200)
  await filled(berth, 1)
  const anonymous = await request(berth, `/v2/private/app/blobs/${digest}`)
  assert.equal(anonymous.status, 401)
  const open = await request(berth, `/v2/public/app/blobs/${digest}`)
  assert.equal(open.status, 200)
  assert.ok(open.body.equals(blob))
  assert.equal(gets(r), 1)
})
