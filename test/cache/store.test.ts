// The cache's store without sockets: reservations against maxSize, eviction, confirmations that expire
// and are forgotten, one leader per missed digest, fills that detach on a write error.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import pino from 'pino'
import { BlobCache } from '../../src/cache/store.js'
import { tempDir } from '../helper.js'

const log = pino({ level: 'silent' })
const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`
const open = (t: Parameters<typeof tempDir>[0], maxSize: number, confirmFor = 60_000) => BlobCache.open({ dir: tempDir(t), maxSize, confirmFor, log })

test('a fill reserves its length first: fills in flight and copies never pass maxSize together', async (t) => {
  const cache = await open(t, 10_000)
  const blobs = [0, 1, 2].map(() => randomBytes(4000))
  const a = cache.startFill(digestOf(blobs[0]), 4000)
  const b = cache.startFill(digestOf(blobs[1]), 4000)
  assert.ok(a !== null && b !== null)
  assert.equal(cache.reserved, 8000)
  assert.equal(cache.startFill(digestOf(blobs[2]), 4000), null, 'no room next to the two in flight')
  assert.equal(cache.stats.skipped, 1)
  assert.equal(cache.startFill(digestOf(blobs[0]), 4000), null, 'one fill per digest')
  a.write(blobs[0])
  assert.equal(await a.commit(), true)
  assert.equal(cache.reserved, 4000)
  assert.equal(cache.size, 4000)
  b.drop()
  assert.equal(cache.reserved, 0)
  const c = cache.startFill(digestOf(blobs[2]), 4000)
  assert.ok(c !== null)
  c.write(blobs[2])
  assert.equal(await c.commit(), true)
  // a third copy needs an eviction: the least recently used goes when the fill starts
  const d = randomBytes(4000)
  const fill = cache.startFill(digestOf(d), 4000)
  assert.ok(fill !== null)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(cache.sizeOf(digestOf(blobs[0])), undefined, 'the oldest copy went')
  assert.equal(cache.stats.evictions, 1)
  assert.ok(cache.size + cache.reserved <= 10_000)
  fill.drop()
})

test('a fill keeps only a whole body; followers see its progress; a commit renames it into place', async (t) => {
  const cache = await open(t, 1 << 20)
  const blob = randomBytes(10_000)
  const fill = cache.startFill(digestOf(blob), blob.length)
  assert.ok(fill !== null)
  let progress = 0
  fill.on('progress', () => { progress++ })
  fill.write(blob.subarray(0, 5000))
  await new Promise((resolve) => fill.once('progress', resolve))
  assert.equal(fill.written, 5000)
  assert.ok(existsSync(fill.tmp))
  fill.write(blob.subarray(5000))
  assert.equal(await fill.commit(), true)
  assert.equal(fill.state, 'kept')
  assert.ok(progress >= 2)
  assert.ok(readFileSync(cache.path(digestOf(blob))).equals(blob))
  const short = cache.startFill(digestOf(randomBytes(10)), 100)
  assert.ok(short !== null)
  short.write(Buffer.alloc(50))
  assert.equal(await short.commit(), false, 'short of its length')
  assert.equal(short.state, 'dropped')
  assert.equal(existsSync(short.tmp), false)
})

test('a write error drops the fill at once, is counted, and lets the download go', async (t) => {
  const cache = await open(t, 1 << 20)
  cache.openFile = () => new Writable({ write (_chunk, _encoding, callback) { callback(Object.assign(new Error('EIO: injected'), { code: 'EIO' })) } }) as never
  const fill = cache.startFill(digestOf(randomBytes(10)), 100)
  assert.ok(fill !== null)
  const done = new Promise((resolve) => fill.once('done', resolve))
  fill.write(Buffer.alloc(50))
  assert.equal(await done, 'dropped')
  assert.equal(fill.needDrain, false, 'a dropped fill never holds a download')
  assert.equal(fill.write(Buffer.alloc(50)), true)
  assert.equal(cache.stats.writeErrors, 1)
  assert.equal(cache.reserved, 0)
})

test('confirmations expire after confirmFor, and a delete forgets every confirmation of the repository', async (t) => {
  const cache = await open(t, 1 << 20, 1000)
  const d = 'sha256:' + 'a'.repeat(64)
  const e = 'sha256:' + 'b'.repeat(64)
  cache.confirm('team/a', d, 0)
  cache.confirm('team/a', e, 0)
  cache.confirm('team/b', d, 0)
  assert.equal(cache.confirmed('team/a', d, 999), true)
  assert.equal(cache.confirmed('team/a', d, 1000), false, 'expired')
  assert.equal(cache.confirmed('team/a', d, 1), false, 'an expired one is gone, not revived')
  cache.forgetRepository('team/a')
  assert.equal(cache.confirmed('team/a', e, 1), false)
  assert.equal(cache.confirmed('team/b', d, 1), true, 'other repositories stay')
  cache.unconfirm('team/b', d)
  assert.equal(cache.confirmed('team/b', d, 1), false)
  cache.confirm('team/ab', d, 0)
  cache.forgetRepository('team/a')
  assert.equal(cache.confirmed('team/ab', d, 1), true, 'a prefix of a name is another repository')
  const never = await open(t, 1 << 20, 0)
  never.confirm('team/a', d)
  assert.equal(never.confirmed('team/a', d), false, 'confirmFor 0: every copy is asked about')
})

test('one leader per missed digest: the others wait for its fill, or for its word that there is none', async (t) => {
  const cache = await open(t, 1 << 20)
  const d = digestOf(Buffer.from('x'))
  assert.equal(cache.leader(d), undefined)
  const settle = cache.lead(d)
  const waiting = cache.leader(d)
  assert.ok(waiting !== undefined)
  const fill = cache.startFill(d, 1)
  settle(fill)
  settle(null) // only the first word counts
  assert.equal(await waiting, fill)
  assert.equal(cache.leader(d), undefined, 'settled: the next miss leads anew')
  fill?.drop()
})

test('open: copies already on disk count, oldest first by mtime, past maxSize the oldest go; leftovers of fills are removed', async (t) => {
  const dir = tempDir(t)
  const { mkdirSync, writeFileSync, utimesSync, readdirSync } = await import('node:fs')
  const { join } = await import('node:path')
  mkdirSync(join(dir, 'sha256'), { recursive: true })
  mkdirSync(join(dir, 'tmp'), { recursive: true })
  writeFileSync(join(dir, 'tmp', 'half-a-fill'), 'x')
  const copies = [0, 1, 2].map((i) => ({ blob: Buffer.alloc(1000, i), at: 1_000_000 + i * 1000 }))
  // written newest first, so that only the mtimes give the order
  for (const c of [...copies].reverse()) {
    const path = join(dir, 'sha256', digestOf(c.blob).slice(7))
    writeFileSync(path, c.blob)
    utimesSync(path, c.at, c.at)
  }
  writeFileSync(join(dir, 'sha256', 'not-a-digest'), 'junk')
  const cache = await BlobCache.open({ dir, maxSize: 2500, confirmFor: 1000, log })
  assert.equal(cache.count, 2)
  assert.equal(cache.size, 2000)
  assert.equal(cache.sizeOf(digestOf(copies[0].blob)), undefined, 'the oldest went')
  assert.equal(cache.sizeOf(digestOf(copies[2].blob)), 1000)
  assert.deepEqual(readdirSync(join(dir, 'tmp')), [], 'fills cut short by a stop are gone')
  assert.ok(readdirSync(join(dir, 'sha512')).length === 0, 'both algorithm folders exist')
})

test('room: an exact fit is taken; a copy already there or a fill in flight is not filled again; eviction stops at the limit', async (t) => {
  const cache = await open(t, 3000)
  const a = randomBytes(1000)
  const fill = cache.startFill(digestOf(a), 3000)
  assert.ok(fill !== null, 'exactly maxSize fits')
  assert.equal(cache.startFill(digestOf(randomBytes(1)), 1), null, 'nothing left')
  fill.drop()
  const kept = cache.startFill(digestOf(a), 1000)
  assert.ok(kept !== null)
  kept.write(a)
  assert.equal(await kept.commit(), true)
  assert.equal(cache.startFill(digestOf(a), 1000), null, 'cached already')
  const b = randomBytes(2000)
  const second = cache.startFill(digestOf(b), 2000)
  assert.ok(second !== null)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(cache.sizeOf(digestOf(a)), 1000, 'copies plus reservations equal to maxSize: nothing evicted')
  assert.equal(cache.stats.evictions, 0)
  second.drop()
  assert.deepEqual({ fills: cache.stats.fills, rejected: cache.stats.rejected, skipped: cache.stats.skipped }, { fills: 1, rejected: 2, skipped: 1 })
})

test('a fill writes its own new file: one left where it would write makes it fail, never overwrite', async (t) => {
  const cache = await open(t, 1 << 20)
  const { writeFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const blob = randomBytes(100)
  writeFileSync(join(cache.dir, 'tmp', `${digestOf(blob).replace(':', '-')}.${process.pid}.0`), 'someone else\'s')
  const fill = cache.startFill(digestOf(blob), blob.length)
  assert.ok(fill !== null)
  const done = new Promise((resolve) => fill.once('done', resolve))
  fill.write(blob)
  assert.equal(await done, 'dropped')
  assert.equal(cache.stats.writeErrors, 1)
  const next = cache.startFill(digestOf(blob), blob.length)
  assert.ok(next !== null, 'the next fill takes another name')
  next.write(blob)
  assert.equal(await next.commit(), true)
})

test('write errors are logged once per condition, and once more when writing works again', async (t) => {
  const lines: string[] = []
  const spy = { ...log, error: (o: { code?: string }, msg: string) => { lines.push(`error ${o.code ?? '-'} ${msg}`) }, info: (_o: unknown, msg: string) => { lines.push(`info ${msg}`) } }
  const cache = await BlobCache.open({ dir: `${tempDir(t)}/a/new/cache`, maxSize: 1 << 20, confirmFor: 1000, log: spy as unknown as typeof log })
  const ok = randomBytes(10)
  const first = cache.startFill(digestOf(ok), 10)
  first?.write(ok)
  assert.equal(await first?.commit(), true, 'a cache in a directory that did not exist')
  assert.deepEqual(lines, [], 'nothing to say while writing works')
  let n = 0
  const fail = (code?: string) => cache.writeFailed(Object.assign(new Error(code === undefined ? 'no code' : `${code}: x${n++}`), code === undefined ? {} : { code }))
  fail('ENOSPC')
  fail('ENOSPC')
  fail('EIO')
  fail()
  fail()
  const blob = randomBytes(10)
  const fill = cache.startFill(digestOf(blob), 10)
  fill?.write(blob)
  await fill?.commit()
  fail('ENOSPC')
  assert.deepEqual(lines, [
    'error ENOSPC blob cache: cannot write a copy; downloads continue without caching',
    'error EIO blob cache: cannot write a copy; downloads continue without caching',
    'error - blob cache: cannot write a copy; downloads continue without caching',
    'info blob cache: writing works again',
    'error ENOSPC blob cache: cannot write a copy; downloads continue without caching'
  ])
  assert.equal(cache.stats.writeErrors, 6)
  // without a code, the message is the condition
  cache.writeFailed(new Error('one thing'))
  cache.writeFailed(new Error('one thing'))
  assert.equal(lines.length, 6)
})

test('at most 100,000 confirmations are remembered: past that the least recently used go', async (t) => {
  const cache = await open(t, 1 << 20)
  const d = 'sha256:' + 'c'.repeat(64)
  for (let i = 0; i < 100_000; i++) cache.confirm(`r/${i}`, d, 0)
  assert.equal(cache.confirmed('r/0', d, 1), true, 'r/0 used again: now the most recent')
  cache.confirm('r/new', d, 0)
  assert.equal(cache.confirmed('r/1', d, 1), false, 'the least recently used went')
  assert.equal(cache.confirmed('r/0', d, 1), true)
  assert.equal(cache.confirmed('r/new', d, 1), true)
})

test('a second leader for the same digest replaces the first; the first settling does not end the second', async (t) => {
  const cache = await open(t, 1 << 20)
  const d = digestOf(Buffer.from('y'))
  const first = cache.lead(d)
  const second = cache.lead(d)
  const waiting = cache.leader(d)
  first(null)
  assert.equal(cache.leader(d), waiting, 'still the second one')
  second(null)
  assert.equal(cache.leader(d), undefined)
})
