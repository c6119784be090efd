// The exchange without sockets: fake upstream servers play scripted answers through the same undici
// handler calls the real dispatcher makes, and a fake response records what the client would get.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { Exchange, type ExchangeOptions } from '../../src/proxy/exchange.js'
import { SendBudget } from '../../src/proxy/flow.js'
import type { RetryPolicy } from '../../src/proxy/retry.js'

class FakeResponse extends EventEmitter {
  statusCode = 0
  headers: Record<string, unknown> = {}
  chunks: Buffer[] = []
  headersSent = false
  destroyed = false
  writableEnded = false
  writableFinished = false
  writableNeedDrain = false
  writableLength = 0
  writeHead (status: number, headers: Record<string, unknown>) { this.statusCode = status; this.headers = headers; this.headersSent = true; return this }
  write (chunk: Buffer) { this.chunks.push(chunk); return true }
  end (chunk?: Buffer | null) { if (chunk) this.chunks.push(chunk); this.writableEnded = true; this.writableFinished = true; this.emit('finish'); return this }
  destroy () { this.destroyed = true; this.emit('close'); return this }
  removeHeader () {}
  getHeaders () { return {} }
  get body () { return Buffer.concat(this.chunks) }
}

/** What one fake server does with a request: answer, stream chunks, then end or fail. */
type Script = (req: Dispatcher.DispatchOptions) => { status: number, headers?: Record<string, string | undefined>, chunks?: Buffer[], fail?: Error, delay?: number }

interface FakeServer { address: string, url: string, seen: Dispatcher.DispatchOptions[], dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void }

function server (name: string, script: Script): FakeServer {
  const s: FakeServer = {
    address: name,
    url: `https://${name}`,
    seen: [],
    dispatch (opts, handler) {
      s.seen.push(opts)
      let aborted: Error | null = null
      const controller = { pause () {}, resume () {}, abort (err: Error) { aborted = err }, paused: false, aborted: false, reason: null } as unknown as Dispatcher.DispatchController
      setImmediate(() => {
        handler.onRequestStart?.(controller, {})
        const answer = script(opts)
        setTimeout(() => play(answer), answer.delay ?? 0)
      })
      const play = (answer: ReturnType<Script>) => {
        handler.onResponseStart?.(controller, answer.status, answer.headers ?? {}, '')
        if (aborted !== null) { handler.onResponseError?.(controller, aborted); return }
        for (const chunk of answer.chunks ?? []) {
          handler.onResponseData?.(controller, chunk)
          if (aborted !== null) { handler.onResponseError?.(controller, aborted); return }
        }
        if (answer.fail !== undefined) handler.onResponseError?.(controller, answer.fail)
        else handler.onResponseEnd?.(controller, {})
      }
    }
  }
  return s
}

function pool (servers: FakeServer[]) {
  const failures: string[] = []
  return {
    failures,
    servers,
    origins: new Set<string>(),
    pick (tried: ReadonlySet<unknown>) { return servers.find((s) => !tried.has(s)) ?? null },
    hasCandidate (tried: ReadonlySet<unknown>) { return servers.some((s) => !tried.has(s)) },
    passiveFailure (s: FakeServer) { failures.push(s.address) }
  }
}

const policy: RetryPolicy = { retryOn: new Set(['error', 'timeout', 'invalid_header', 'http_502']), tries: 0, timeout: 0, nonIdempotent: false }

function exchange (servers: FakeServer[], o: { method?: string, url?: string, digest?: string | null, body?: boolean, policy?: RetryPolicy } = {}) {
  const res = new FakeResponse()
  const p = pool(servers)
  const logged: string[] = []
  const log = { error: (_o: unknown, m: string) => logged.push(m), warn: (_o: unknown, m: string) => logged.push(m), info: () => {}, debug: () => {} }
  const request = {
    raw: { method: o.method ?? 'GET', url: o.url ?? '/v2/a/blobs/x', headers: {}, complete: o.body !== true, socket: null, resume () {}, once () {} },
    headers: {},
    log,
    upstreamAddress: '',
    bodyBytesSent: 0
  }
  const options = {
    request, res, pool: p, policy: o.policy ?? policy, budget: new SendBudget(), headers: [], publicOrigin: 'https://r.example',
    body: o.body === true ? new EventEmitter() : null, cacheable: null, digest: o.digest ?? null
  } as unknown as ExchangeOptions
  const ex = new Exchange(options)
  const done = new Promise<void>((resolve) => { res.once('finish', resolve); res.once('close', resolve) })
  return { ex, res, pool: p, logged, request, done }
}

const blob = randomBytes(3000)
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
const pieces = [blob.subarray(0, 1000), blob.subarray(1000, 2000), blob.subarray(2000)]
const whole: Script = (req) => {
  const range = (req.headers as string[]).indexOf('range')
  if (range === -1) return { status: 200, headers: { 'content-length': String(blob.length) }, chunks: pieces }
  const from = Number(/bytes=(\d+)-/.exec((req.headers as string[])[range + 1])?.[1])
  return { status: 206, headers: { 'content-range': `bytes ${from}-${blob.length - 1}/${blob.length}` }, chunks: [blob.subarray(from)] }
}

test('a listed status goes to the next server before anything reached the client', async () => {
  const a = server('a', () => ({ status: 502, chunks: [Buffer.from('bad gateway')] }))
  const b = server('b', () => ({ status: 200, chunks: [Buffer.from('from b')] }))
  const { ex, res, done, request } = exchange([a, b], { url: '/v2/a/manifests/v1' })
  ex.start()
  await done
  assert.equal(res.statusCode, 200)
  assert.equal(res.body.toString(), 'from b')
  assert.equal(request.upstreamAddress, 'a, b')
  assert.equal(request.bodyBytesSent, 6)
})

test('an upload whose body started is never sent to another server: the 502 passes through', async () => {
  const a = server('a', () => ({ status: 502, chunks: [Buffer.from('bad gateway')] }))
  const b = server('b', () => ({ status: 201 }))
  const { ex, res, done } = exchange([a, b], { method: 'PATCH', url: '/v2/a/blobs/uploads/u', body: true })
  ex.start()
  await done
  assert.equal(res.statusCode, 502)
  assert.equal(b.seen.length, 0)
})

test('the time budget stops further tries: after nextUpstream.timeout no other server is asked', async () => {
  const slow = server('a', () => ({ status: 502, delay: 30 }))
  const b = server('b', () => ({ status: 200, chunks: [Buffer.from('b')] }))
  const { ex, res, done } = exchange([slow, b], { url: '/v2/a/manifests/v1', policy: { ...policy, timeout: 10 } })
  ex.start()
  await done
  assert.equal(res.statusCode, 502, 'the budget was spent on the first server')
  assert.equal(b.seen.length, 0, 'nothing reached the second server')
})

test('a digest-addressed body: each chunk waits for the next, the last for the verdict', async () => {
  let clientHadAtEnd = -1
  const a = server('a', () => ({ status: 200, headers: { 'content-length': String(blob.length) }, chunks: pieces }))
  const { ex, res, done } = exchange([a], { digest })
  const end = res.end.bind(res)
  res.end = (chunk?: Buffer | null) => { clientHadAtEnd = Buffer.concat(res.chunks).length; return end(chunk) }
  ex.start()
  await done
  assert.equal(clientHadAtEnd, 2000, 'the last chunk went out with the end, after the digest matched')
  assert.ok(res.body.equals(blob))
  assert.equal(res.destroyed, false)
})

test('a body that does not match its digest is cut and counts against its server, whatever the pool size', async () => {
  const flipped = Buffer.from(blob)
  flipped[10] ^= 1
  for (const servers of [1, 2]) {
    const bad = server('bad', () => ({ status: 200, headers: { 'content-length': String(blob.length) }, chunks: [flipped] }))
    const others = servers === 2 ? [server('good', whole)] : []
    const { ex, res, done, pool: p, logged } = exchange([bad, ...others], { digest })
    ex.start()
    await done
    assert.equal(res.destroyed, true, `${servers} server(s)`)
    assert.equal(res.writableEnded, false)
    assert.deepEqual(p.failures, ['bad'])
    assert.ok(logged.some((l) => l.includes('does not match its digest')))
  }
  const long = server('long', () => ({ status: 200, headers: { 'content-length': String(blob.length + 10) }, chunks: [blob, Buffer.alloc(10)] }))
  const { ex, res, done } = exchange([long], { digest })
  ex.start()
  await done
  assert.equal(res.destroyed, true, 'the right bytes and more')
})

test('a digest-addressed download that dies mid-body resumes on another server with Range; a tag-addressed one is cut', async () => {
  const dies = () => server('a', () => ({ status: 200, headers: { 'content-length': String(blob.length) }, chunks: [pieces[0]], fail: new Error('socket closed') }))
  const b = server('b', whole)
  const resumed = exchange([dies(), b], { digest })
  resumed.ex.start()
  await resumed.done
  assert.ok(resumed.res.body.equals(blob))
  assert.equal(resumed.res.destroyed, false)
  const headers = b.seen[0].headers as string[]
  assert.equal(headers[headers.indexOf('range') + 1], 'bytes=1000-')
  const c = server('c', whole)
  const tag = exchange([dies(), c], { url: '/v2/a/manifests/latest', digest: null })
  tag.ex.start()
  await tag.done
  assert.equal(tag.res.destroyed, true)
  assert.equal(c.seen.length, 0, 'a tag may name other bytes on another server: never resumed')
})

test('a resume whose answer is not the missing part of the same body is refused', async () => {
  const a = server('a', () => ({ status: 200, headers: { 'content-length': String(blob.length) }, chunks: [pieces[0]], fail: new Error('socket closed') }))
  const b = server('b', () => ({ status: 200, headers: { 'content-length': String(blob.length) }, chunks: [blob] }))
  const { ex, res, done } = exchange([a, b], { digest })
  ex.start()
  await done
  assert.equal(res.destroyed, true, '200 instead of 206: cut')
  assert.equal(res.body.length <= 1000, true, 'nothing of the wrong answer reached the client')
})
