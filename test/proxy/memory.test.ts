// The read buffers of transfers: counted on undici's channels, collected young. The old generation's
// room and undici's parser on V8's baseline compiler: the V8 flags berth sets, unless the operator set
// them. The lean start: the flags, and the operator's own.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { spawnSync } from 'node:child_process'
import { Readable } from 'node:stream'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import Pool from 'undici/lib/dispatcher/pool.js'
import { BufferCollector, CAPPED_SEMI_SPACE_MB, HEAP_GROWING_PERCENT, HEAP_GROWING_PERCENT_CAPPED, tuneCollector, heapGrowingFlag, baselineWasmFlags, maxSemiSpaceMB, v8Collector } from '../../src/memory.js'
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
  const capped = `--heap-growing-percent=${HEAP_GROWING_PERCENT_CAPPED}`
  assert.equal(heapGrowingFlag([]), flag)
  assert.equal(heapGrowingFlag(['--max-old-space-size=512', '--import', 'tsx']), flag)
  assert.equal(heapGrowingFlag(['--heap-growing-percent=50']), null)
  assert.equal(heapGrowingFlag(['--enable-source-maps', '--heap_growing_percent=30']), null)
  assert.equal(heapGrowingFlag(['--heap-growing-percent=50'], '--max-semi-space-size=8'), null)
  // the young generation capped (as the Docker image runs berth): room as large as what is alive
  assert.equal(heapGrowingFlag([], '--max-semi-space-size=8'), capped)
  assert.equal(heapGrowingFlag(['--max_semi_space_size', '4']), capped)
  assert.equal(heapGrowingFlag([], '--max-semi-space-size=16'), flag)
  assert.equal(heapGrowingFlag(['--max-semi-space-size=32'], '--max-semi-space-size=8'), flag, 'the command line over NODE_OPTIONS')
  assert.equal(maxSemiSpaceMB([], '--enable-source-maps --max-semi-space-size=8'), 8)
  assert.equal(maxSemiSpaceMB(['--max-semi-space-size=x']), null)
  assert.equal(maxSemiSpaceMB([], ''), null)
  // V8 starts marking when the room left is smaller than its young generation: 12-16 MB are alive in a
  // busy berth, so room = live x factor must stay above 16 MB (V8's default) and above the capped size.
  assert.ok(HEAP_GROWING_PERCENT >= 100, 'room at least the live size: more than a busy young generation over 16 MB alive')
  assert.ok(12 * HEAP_GROWING_PERCENT_CAPPED / 100 > CAPPED_SEMI_SPACE_MB, 'room over 12 MB alive more than the capped young generation')
  // This Node's V8 knows the flags and takes them at run time (it says "unrecognized flag" otherwise).
  for (const f of [flag, capped, '--no-wasm-tier-up', '--no-wasm-dynamic-tiering']) {
    const run = spawnSync(process.execPath, ['-e', `require('node:v8').setFlagsFromString(${JSON.stringify(f)})`], { encoding: 'utf8' })
    assert.equal(run.status, 0)
    assert.equal(run.stdout + run.stderr, '', f)
  }
})

test('undici\'s parser stays on V8\'s baseline compiler unless the operator chose', () => {
  const flags = ['--no-wasm-tier-up', '--no-wasm-dynamic-tiering']
  assert.deepEqual(baselineWasmFlags([]), flags)
  assert.deepEqual(baselineWasmFlags(['--max-semi-space-size=8', '--import', 'tsx']), flags)
  for (const own of ['--no-liftoff', '--liftoff-only', '--no-liftoff-only', '--wasm-tier-up', '--no-wasm-dynamic-tiering', '--wasm_tier_up']) assert.deepEqual(baselineWasmFlags([own]), [], own)
  assert.deepEqual(baselineWasmFlags([], '--enable-source-maps --wasm-tier-up'), [], 'given in NODE_OPTIONS too')
})

test('with berth\'s flags, the first thousand proxied requests take no optimizing compilation of the parser', () => {
  // A process making 1000 requests through undici (8 at a time, to a server in the same process), then
  // V8's own malloc peak: the optimizing compiler's work on llhttp took 42-43 MB here, 5-8 MB without it.
  const child = (tune: boolean): number => {
    const code = `
      import { createServer } from 'node:http'
      import { once } from 'node:events'
      import { getHeapStatistics } from 'node:v8'
      import { Pool } from 'undici'
      ${tune ? `(await import(${JSON.stringify(new URL('../../src/memory.ts', import.meta.url).href)})).tuneCollector()` : ''}
      const s = createServer((req, res) => { res.writeHead(200, { 'docker-distribution-api-version': 'registry/2.0' }); res.end('{}') })
      s.listen(0, '127.0.0.1'); await once(s, 'listening')
      const pool = new Pool('http://127.0.0.1:' + s.address().port, { connections: 8 })
      const one = () => pool.request({ path: '/v2/', method: 'GET' }).then((r) => r.body.dump())
      for (let i = 0; i < 1000; i += 8) await Promise.all(Array.from({ length: 8 }, one))
      await new Promise((resolve) => setTimeout(resolve, 500)) // a compilation under way ends
      console.log(getHeapStatistics().peak_malloced_memory)
      await pool.close(); s.close()`
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8' })
    assert.equal(run.status, 0, run.stderr)
    return Number(run.stdout.trim()) / MB
  }
  const berth = child(true)
  const plain = child(false)
  assert.ok(berth < 20, `V8's malloc peak with berth's flags: ${berth.toFixed(1)} MB`)
  assert.ok(plain > 20, `without them the parser is recompiled (so this test can fail): ${plain.toFixed(1)} MB`)
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
