// Integrity under faults: an upstream that sends wrong bytes, a cache that must keep its size, a cache
// disk that fails, concurrent misses. The upstream is a small TLS server that serves blobs as a registry
// does (Content-Length, Range) and misbehaves on request.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { Writable } from 'node:stream'
import https from 'node:https'
import type { IncomingMessage } from 'node:http'
import { startBerth, startUpstream, tempDir, waitFor, sleep, bomb, type Berth } from '../helper.js'

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`
type Fault = 'flip' | 'short' | 'long' | 'die'

interface Blobs {
  url: string
  blobs: Map<string, Buffer>
  /** repository -> digests it holds */
  repos: Map<string, Set<string>>
  faults: Map<string, Fault>
  /** GETs per digest (Range requests included) */
  gets: Map<string, number>
  /** bytes per write and ms between writes: a blob streams slowly enough for others to arrive */
  pace: { chunk: number, every: number }
}

async function blobServer (t: Parameters<typeof startBerth>[0]): Promise<Blobs> {
  const b: Blobs = { url: '', blobs: new Map(), repos: new Map(), faults: new Map(), gets: new Map(), pace: { chunk: 1 << 20, every: 0 } }
  const up = await startUpstream((req: IncomingMessage, res) => {
    const m = /^\/v2\/(.+)\/(blobs|manifests)\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '')
    const blob = m === null ? undefined : b.blobs.get(m[3])
    if (m === null || blob === undefined || b.repos.get(m[1])?.has(m[3]) !== true) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}')
      return
    }
    const digest = m[3]
    if (req.method === 'GET') b.gets.set(digest, (b.gets.get(digest) ?? 0) + 1)
    const fault = b.faults.get(digest)
    let body = blob
    if (fault === 'flip') { body = Buffer.from(blob); body[body.length >> 1] ^= 0xff }
    if (fault === 'short') body = blob.subarray(0, blob.length - 100)
    if (fault === 'long') body = Buffer.concat([blob, randomBytes(4096)])
    let start = 0
    const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''))
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'docker-content-digest': digest }
    if (range !== null) {
      start = Number(range[1])
      res.writeHead(206, { ...headers, 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` })
    } else {
      res.writeHead(200, { ...headers, 'content-length': body.length })
    }
    if (req.method === 'HEAD') { res.end(); return }
    // 'die': the first GET's connection is cut half-way
    const dieAt = fault === 'die' && range === null ? body.length >> 1 : Infinity
    if (fault === 'die' && range === null) b.faults.delete(digest)
    let at = start
    const next = () => {
      if (res.destroyed) return
      if (at >= dieAt) { res.socket?.destroy(); return }
      const end = Math.min(body.length, at + b.pace.chunk, dieAt)
      const more = res.write(body.subarray(at, end))
      at = end
      if (at >= body.length) { res.end(); return }
      const go = () => { if (b.pace.every > 0) setTimeout(next, b.pace.every); else setImmediate(next) }
      if (more) go(); else res.once('drain', go)
    }
    next()
  })
  b.url = up.url
  t.after(() => up.close())
  return b
}

function add (b: Blobs, repository: string, size: number, fault?: Fault): { digest: string, blob: Buffer } {
  const blob = randomBytes(size)
  const digest = digestOf(blob)
  b.blobs.set(digest, blob)
  if (!b.repos.has(repository)) b.repos.set(repository, new Set())
  b.repos.get(repository)?.add(digest)
  if (fault !== undefined) b.faults.set(digest, fault)
  return { digest, blob }
}

/** A GET through berth: the status and the body's digest, or 'cut' when the connection ended abruptly. */
function get (berth: Berth, path: string, opts: { readDelay?: number, headers?: Record<string, string> } = {}): Promise<{ status: number, digest: string, bytes: number } | 'cut'> {
  return new Promise((resolve) => {
    https.get(`${berth.url}${path}`, { ca: berth.ca, servername: 'localhost', agent: false, headers: opts.headers }, (res) => {
      const hash = createHash('sha256')
      let bytes = 0
      res.on('data', (c: Buffer) => {
        hash.update(c)
        bytes += c.length
        if (opts.readDelay !== undefined) { res.pause(); setTimeout(() => res.resume(), opts.readDelay) }
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, digest: `sha256:${hash.digest('hex')}`, bytes }))
      res.on('aborted', () => resolve('cut'))
      res.on('error', () => resolve('cut'))
    }).on('error', () => resolve('cut'))
  })
}

test('a digest-addressed body that does not match never ends cleanly, with one upstream, with or without the cache', async (t) => {
  const b = await blobServer(t)
  const good = add(b, 'team/app', 300_000)
  const faulty = (['flip', 'short', 'long'] as const).map((fault) => ({ fault, ...add(b, 'team/app', 300_000, fault) }))
  const manifest = add(b, 'team/app', 2_000, 'flip')
  for (const cache of [false, true]) {
    const berth = await startBerth(t, [b.url], cache ? { cache: { dir: tempDir(t), maxSize: '10m' } } : {})
    for (const { fault, digest } of faulty) {
      assert.equal(await get(berth, `/v2/team/app/blobs/${digest}`), 'cut', `${fault}, cache ${cache}`)
    }
    assert.equal(await get(berth, `/v2/team/app/manifests/${manifest.digest}`), 'cut', `a manifest by digest, cache ${cache}`)
    assert.deepEqual(await get(berth, `/v2/team/app/blobs/${good.digest}`), { status: 200, digest: good.digest, bytes: good.blob.length })
    if (cache) {
      await waitFor(() => berth.app.blobCache?.count === 1, 5000, 'the good blob cached')
      assert.equal(berth.app.blobCache?.stats.rejected, 3, 'no wrong copy kept')
    }
    await berth.close()
    const log = readFileSync(join(berth.dir, 'error.log'), 'utf8')
    assert.equal(log.match(/does not match its digest/g)?.length, 4)
  }
  assert.equal(b.gets.get(good.digest), 2)
})

test('with two upstreams, the one that sent wrong bytes is out for failTimeout: the client\'s retry gets the right ones', async (t) => {
  const bad = await blobServer(t)
  const good = await blobServer(t)
  const blob = add(good, 'team/app', 200_000)
  bad.blobs.set(blob.digest, blob.blob)
  bad.repos.set('team/app', new Set([blob.digest]))
  bad.faults.set(blob.digest, 'flip')
  const berth = await startBerth(t, [bad.url, good.url])
  assert.equal(await get(berth, `/v2/team/app/blobs/${blob.digest}`), 'cut')
  for (let i = 0; i < 3; i++) assert.deepEqual(await get(berth, `/v2/team/app/blobs/${blob.digest}`), { status: 200, digest: blob.digest, bytes: blob.blob.length })
  assert.equal(bad.gets.get(blob.digest), 1)
  assert.equal(berth.app.upstreams.servers[0].failures, 1)
})

/** Bytes under `dir`, every file counted (the copies and the fills in flight). */
function usage (dir: string): number {
  let n = 0
  const walk = (d: string) => {
    let names: string[]
    try { names = readdirSync(d) } catch { return }
    for (const name of names) {
      const p = join(d, name)
      try {
        const s = statSync(p)
        if (s.isDirectory()) walk(p); else n += s.size
      } catch { /* gone meanwhile */ }
    }
  }
  walk(dir)
  return n
}

test('cache.maxSize bounds the disk with fills in flight: room is reserved before a fill starts, and a download that cannot fit is served uncached', async (t) => {
  const b = await blobServer(t)
  b.pace = { chunk: 256 << 10, every: 5 }
  const blobs = Array.from({ length: 20 }, () => add(b, 'team/app', 6 << 20))
  const dir = tempDir(t)
  const berth = await startBerth(t, [b.url], { cache: { dir: dir, maxSize: '40m' } })
  let peak = 0
  const sampler = setInterval(() => { peak = Math.max(peak, usage(dir)) }, 5)
  const results = await Promise.all(blobs.map(({ digest }) => get(berth, `/v2/team/app/blobs/${digest}`)))
  clearInterval(sampler)
  results.forEach((r, i) => assert.deepEqual(r, { status: 200, digest: blobs[i].digest, bytes: 6 << 20 }))
  await waitFor(() => berth.app.blobCache?.reserved === 0, 5000, 'every fill over')
  peak = Math.max(peak, usage(dir))
  t.diagnostic(`peak disk use ${(peak / (1 << 20)).toFixed(1)} MiB, ${berth.app.blobCache?.count} copies kept, ${berth.app.blobCache?.stats.skipped} downloads not cached`)
  assert.ok(peak <= 40 << 20, `the cache took ${peak} bytes on disk`)
  assert.ok((berth.app.blobCache?.count ?? 0) >= 5, 'it still caches what fits')
  assert.ok((berth.app.blobCache?.stats.skipped ?? 0) > 0)
})

/** A small tmpfs for the cache (root can mount one); null where mounting is not allowed. */
function smallDisk (t: Parameters<typeof startBerth>[0], megabytes: number): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'berth-disk-'))
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', dir])
  t.after(() => {
    if (mount.status === 0) spawnSync('umount', [dir])
    rmSync(dir, { recursive: true, force: true })
  })
  return mount.status === 0 ? dir : null
}

/** A write stream that fails with `code` after `after` bytes, as a full or failing disk does; `slow`: it
 * takes a while per write, so that the download is waiting on it when the error comes. */
function failingFile (code: string, after: number, slow = 0): Writable {
  let written = 0
  return new Writable({
    highWaterMark: 1 << 20,
    write (chunk: Buffer, _encoding, callback) {
      written += chunk.length
      if (written > after) setTimeout(() => callback(Object.assign(new Error(`${code}: injected`), { code })), slow)
      else setTimeout(callback, slow)
    }
  })
}

test('a cache disk that fails mid-fill lets go of the downloads at once: they finish from the upstream, and the error log says why, once', async (t) => {
  const b = await blobServer(t)
  const disk = smallDisk(t, 8)
  // A slow disk that fills up (the downloads wait on it when it fails), and a real small tmpfs where root
  // may mount one.
  for (const kind of ['a slow disk that fills up (injected ENOSPC)', ...(disk === null ? [] : ['an 8 MiB tmpfs'])]) {
    const blobs = Array.from({ length: 3 }, () => add(b, 'team/app', 6 << 20))
    const berth = await startBerth(t, [b.url], { cache: { dir: kind.startsWith('an') ? disk as string : tempDir(t), maxSize: '1g' } })
    const cache = berth.app.blobCache as NonNullable<typeof berth.app.blobCache>
    if (!kind.startsWith('an')) cache.openFile = () => failingFile('ENOSPC', 3 << 20, 2) as unknown as ReturnType<typeof cache.openFile>
    const started = Date.now()
    const results = await Promise.race([Promise.all(blobs.map(({ digest }) => get(berth, `/v2/team/app/blobs/${digest}`))), bomb(15_000, `the downloads, ${kind}`)])
    results.forEach((r, i) => assert.deepEqual(r, { status: 200, digest: blobs[i].digest, bytes: 6 << 20 }, kind))
    t.diagnostic(`3 x 6 MiB over ${kind} in ${Date.now() - started} ms`)
    await waitFor(() => cache.reserved === 0, 5000, 'every fill over')
    assert.ok(cache.stats.writeErrors >= 1, kind)
    await berth.close()
    const log = readFileSync(join(berth.dir, 'error.log'), 'utf8')
    const lines = log.split('\n').filter((l) => l.includes('cannot write a copy'))
    assert.equal(lines.length, 1, `${kind}: one line for one condition`)
    assert.match(lines[0], /"code":"ENOSPC"/)
    assert.ok(lines[0].includes(cache.dir))
    assert.doesNotMatch(log, /does not match its digest/)
  }
  if (disk === null) t.diagnostic('tmpfs could not be mounted here: only the injected ENOSPC ran')
})

test('permission and I/O errors, and a cache directory removed while berth runs, cost the copy and never the download', async (t) => {
  const b = await blobServer(t)
  const dir = join(tempDir(t), 'cache')
  const berth = await startBerth(t, [b.url], { cache: { dir: dir, maxSize: '1g' } })
  const cache = berth.app.blobCache as NonNullable<typeof berth.app.blobCache>
  const original = cache.openFile
  for (const code of ['EACCES', 'EIO']) {
    cache.openFile = () => failingFile(code, 1 << 20) as unknown as ReturnType<typeof cache.openFile>
    const { digest } = add(b, 'team/app', 3 << 20)
    assert.deepEqual(await get(berth, `/v2/team/app/blobs/${digest}`), { status: 200, digest, bytes: 3 << 20 }, code)
  }
  cache.openFile = original
  rmSync(dir, { recursive: true, force: true })
  for (let i = 0; i < 2; i++) {
    const { digest } = add(b, 'team/app', 3 << 20)
    assert.deepEqual(await get(berth, `/v2/team/app/blobs/${digest}`), { status: 200, digest, bytes: 3 << 20 }, 'directory removed')
  }
  assert.equal(cache.count, 0)
  await berth.close()
  const codes = readFileSync(join(berth.dir, 'error.log'), 'utf8').split('\n').filter((l) => l.includes('cannot write a copy')).map((l) => (JSON.parse(l) as { code: string }).code)
  assert.deepEqual(codes, ['EACCES', 'EIO', 'ENOENT'])
  assert.equal(existsSync(dir), false)
  mkdirSync(dir, { recursive: true }) // for the cleanup
})

test('concurrent misses fetch a blob once; the others read the fill as it grows, each at its own pace, each checked for its own repository', async (t) => {
  const b = await blobServer(t)
  b.pace = { chunk: 128 << 10, every: 10 }
  const { digest, blob } = add(b, 'team/app', 4 << 20)
  b.repos.set('team/other', new Set()) // holds nothing
  const berth = await startBerth(t, [b.url], { cache: { dir: tempDir(t), maxSize: '100m' } })
  const path = (repository: string) => `/v2/${repository}/blobs/${digest}`
  const whole = { status: 200, digest, bytes: blob.length }
  const [fast, slow, ...rest] = await Promise.all([
    get(berth, path('team/app')),
    get(berth, path('team/app'), { readDelay: 3 }),
    ...Array.from({ length: 7 }, () => get(berth, path('team/app'))),
    get(berth, path('team/other'))
  ])
  assert.deepEqual(fast, whole)
  assert.deepEqual(slow, whole, 'a slow reader gets it all at its own pace')
  for (const r of rest.slice(0, 7)) assert.deepEqual(r, whole)
  assert.equal((rest[7] as { status: number }).status, 404, 'another repository is asked about, not served')
  assert.equal(b.gets.get(digest), 1, 'the registry sent the blob once')
  assert.ok((berth.app.blobCache?.stats.followers ?? 0) >= 1)
  await waitFor(() => berth.app.blobCache?.count === 1, 5000, 'kept')
})

test('followers of a fill whose download died continue from the upstream with Range and get the whole, verified blob', async (t) => {
  const b = await blobServer(t)
  b.pace = { chunk: 64 << 10, every: 5 }
  const { digest, blob } = add(b, 'team/app', 2 << 20, 'die')
  const berth = await startBerth(t, [b.url], { cache: { dir: tempDir(t), maxSize: '100m' } })
  const [leader, ...followers] = await Promise.all(Array.from({ length: 4 }, (_, i) => sleep(i * 20).then(() => get(berth, `/v2/team/app/blobs/${digest}`))))
  assert.equal(leader, 'cut', 'one server, cut mid-body: the first client is cut')
  for (const f of followers) assert.deepEqual(f, { status: 200, digest, bytes: blob.length })
  assert.ok((b.gets.get(digest) ?? 0) >= 2, 'the followers resumed from the upstream')
})
