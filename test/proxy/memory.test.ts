// The read buffers of transfers: counted on undici's channels, collected young. The old generation's
// room: the V8 flag berth sets, unless the operator set it. The lean start: the flags, and the
// operator's own.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { spawnSync } from 'node:child_process'
import { Readable } from 'node:stream'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import Pool from 'undici/lib/dispatcher/pool.js'
import { BufferCollector, HEAP_GROWING_PERCENT, tuneCollector, heapGrowingFlag, v8Collector } from '../../src/memory.js'
import { leanStartFlags } from '../../src/lean-start.js'

const MB = 1 << 20

/** A server that answers every GET with `size` bytes (from one reused buffer) and swallows any body. */
async function server (size: number): Promise<{ url: string, close: () => Promise<void> }> {
  const piece = Buffer.alloc(256 << 10, 7)
  const s: Server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (req.method !== 'GET') { res.end('ok'); return }
      res.writeHead(200, { 'content-length': size })
      let left = size
      const more = (): void => {
        while (left > 0) {
          const n = Math.min(left, piece.length)
          left -= n
          if (!res.write(n === piece.length ? piece : piece.subarray(0, n))) { res.once('drain', more); return }
        }
        res.end()
      }
      more()
    })
  })
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, close: async () => { s.close(); await once(s, 'close') } }
}

/** A request through undici (as berth's upstream dispatcher makes it); `onChunk` sees each body chunk. */
async function exchange (pool: Pool, method: string, body: Readable | null, onChunk: () => void = () => {}): Promise<number> {
  return await new Promise((resolve, reject) => {
    let got = 0
    pool.dispatch({ path: '/', method, body }, {
      onRequestStart () {},
      onResponseStart () {},
      onResponseData (_c: unknown, chunk: Buffer) { got += chunk.length; onChunk() },
      onResponseEnd () { resolve(got) },
      onResponseError (_c: unknown, err: Error) { reject(err) }
    } as never)
  })
}

test('V8\'s collector is there, and a minor collection is a scavenge', async () => {
  const gc = v8Collector()
  assert.equal(typeof gc, 'function')
  const kinds: number[] = []
  const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) kinds.push((e as unknown as { detail: { kind: number } }).detail.kind) })
  obs.observe({ entryTypes: ['gc'] })
  gc?.({ type: 'minor' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  obs.disconnect()
  assert.ok(kinds.includes(constants.NODE_PERFORMANCE_GC_MINOR), `gc kinds seen: ${kinds.join(',')}`)
  assert.ok(!kinds.includes(constants.NODE_PERFORMANCE_GC_MAJOR))
})

test('a scavenge every step of bytes, counted across chunks, and none below it', () => {
  const asked: unknown[] = []
  const c = new BufferCollector((o) => { asked.push(o) }, 10)
  c.note(4)
  c.note(5)
  assert.equal(asked.length, 0)
  c.note(1)
  assert.deepEqual(asked, [{ type: 'minor' }])
  c.note(25) // one read larger than the step: one scavenge, what is over the step counts toward the next
  assert.equal(c.scavenges, 2)
  c.note(4)
  assert.equal(c.scavenges, 2)
  c.note(1)
  assert.equal(c.scavenges, 3)
})

test('while a body streams, its dead read buffers do not pile up', async (t) => {
  const size = 200 * MB
  const up = await server(size)
  const pool = new Pool(up.url)
  t.after(async () => { await pool.close(); await up.close() })
  tuneCollector() // for the rest of this test process, as for a berth process
  await exchange(pool, 'GET', null) // the connection, the code: warm
  v8Collector()?.({ type: 'major' }) // and no garbage left from before
  let held = 0
  let n = 0
  await exchange(pool, 'GET', null, () => {
    if (++n % 16 === 0) held = Math.max(held, process.memoryUsage().arrayBuffers)
  })
  // V8 alone lets them pile up toward its limit for outside memory (64 MB over its last full collection):
  // 36-40 MB here without berth's scavenges, 9-16 MB with them.
  assert.ok(held < 24 * MB, `most memory held by ArrayBuffers while ${size / MB} MB streamed: ${(held / MB).toFixed(1)} MB`)
})

// After the test above: what this one streams would still be in memory that test measures.
test('the bodies undici receives and sends are counted, until stopped', async (t) => {
  const up = await server(24 * MB)
  const pool = new Pool(up.url)
  t.after(async () => { await pool.close(); await up.close() })
  let scavenges = 0
  const c = new BufferCollector(() => { scavenges++ }, 4 * MB)
  const stop = c.watchUndici()
  assert.equal(await exchange(pool, 'GET', null), 24 * MB)
  assert.equal(scavenges, 6)
  await exchange(pool, 'PUT', Readable.from(Array.from({ length: 8 }, () => Buffer.alloc(MB)))) // a body as a client sends it: a stream
  assert.equal(scavenges, 8, 'an upload counts too')
  stop()
  await exchange(pool, 'GET', null)
  await exchange(pool, 'PUT', Readable.from(Array.from({ length: 8 }, () => Buffer.alloc(MB))))
  assert.equal(scavenges, 8)
})

test('the old generation gets its room unless the operator chose a growing factor', () => {
  const flag = `--heap-growing-percent=${HEAP_GROWING_PERCENT}`
  assert.equal(heapGrowingFlag([]), flag)
  assert.equal(heapGrowingFlag(['--max-old-space-size=512', '--import', 'tsx']), flag)
  assert.equal(heapGrowingFlag(['--heap-growing-percent=50']), null)
  assert.equal(heapGrowingFlag(['--enable-source-maps', '--heap_growing_percent=30']), null)
  assert.ok(HEAP_GROWING_PERCENT >= 100, 'room at least the live size: more than a busy young generation over 16 MB alive')
  // This Node's V8 knows the flag and takes it at run time (it says "unrecognized flag" otherwise).
  const run = spawnSync(process.execPath, ['-e', `require('node:v8').setFlagsFromString(${JSON.stringify(flag)})`], { encoding: 'utf8' })
  assert.equal(run.status, 0)
  assert.equal(run.stdout + run.stderr, '')
})

test('the lean start holds back what the operator did not set, and says how to give it back', () => {
  const both = { during: ['--no-turbofan', '--semi-space-growth-factor=1'], after: ['--turbofan', '--semi-space-growth-factor=2'] }
  assert.deepEqual(leanStartFlags([]), both)
  assert.deepEqual(leanStartFlags(['--trace-opt', '--max-semi-space-size=8', '--import', 'tsx'], '--max-old-space-size=512'), both)
  const youngOnly = { during: ['--semi-space-growth-factor=1'], after: ['--semi-space-growth-factor=2'] }
  for (const own of [['--jitless'], ['--no-opt'], ['--turbofan'], ['--max_opt=2']]) assert.deepEqual(leanStartFlags(own), youngOnly, own[0])
  // NODE_OPTIONS may carry --jitless: with it, turning the compiler on after start would undo the operator's choice
  assert.deepEqual(leanStartFlags([], ' --enable-source-maps  --jitless'), youngOnly)
  assert.deepEqual(leanStartFlags(['--semi_space_growth_factor=4', '--noturbofan']), { during: [], after: [] })
  // This Node's V8 knows all four and takes them at run time (it says "unrecognized flag" otherwise).
  const run = spawnSync(process.execPath, ['-e', `const v8 = require('node:v8'); for (const f of ${JSON.stringify([...both.during, ...both.after])}) v8.setFlagsFromString(f)`], { encoding: 'utf8' })
  assert.equal(run.status, 0)
  assert.equal(run.stdout + run.stderr, '')
})
