// The body limit on a chunked body, without sockets: exactly the limit passes, one byte more errors.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import { requestBody } from '../../src/proxy/request-body.js'

function fakeRequest (headers: Record<string, string>) {
  const raw = Object.assign(new PassThrough(), { headers, complete: false })
  return { raw, headers, bodyBytesReceived: 0 } as unknown as FastifyRequest & { raw: PassThrough }
}

async function drain (size: number, limit: number): Promise<{ bytes: number, error?: string }> {
  const request = fakeRequest({ 'transfer-encoding': 'chunked' })
  const body = requestBody(request, limit)
  assert.ok(body !== null)
  let bytes = 0
  const done = new Promise<{ bytes: number, error?: string }>((resolve) => {
    body.on('data', (c: Buffer) => { bytes += c.length })
    body.on('end', () => resolve({ bytes }))
    body.on('error', (err: Error & { code?: string }) => resolve({ bytes, error: err.code }))
  })
  for (let left = size; left > 0; left -= 100) request.raw.write(Buffer.alloc(Math.min(100, left)))
  request.raw.end()
  return await done
}

test('a chunked body of exactly the limit passes; one byte more is an error before the upstream sees a clean end', async () => {
  assert.deepEqual(await drain(1024, 1024), { bytes: 1024 })
  const over = await drain(1025, 1024)
  assert.equal(over.error, 'BERTH_ERR_BODY_TOO_LARGE')
  assert.ok(over.bytes <= 1024)
  assert.deepEqual(await drain(5000, 0), { bytes: 5000 }, 'limit 0: none')
})

test('which body goes upstream: none, the request itself for a Content-Length, a counted stream for chunked', () => {
  assert.equal(requestBody(fakeRequest({}), 10), null)
  assert.equal(requestBody(fakeRequest({ 'content-length': '0' }), 10), null)
  const framed = fakeRequest({ 'content-length': '5' })
  assert.equal(requestBody(framed, 10), framed.raw)
  assert.notEqual(requestBody(fakeRequest({ 'transfer-encoding': 'chunked' }), 10), null)
})

test('a client that goes away mid-body is an error to the upstream, never a clean end', async () => {
  const request = fakeRequest({ 'transfer-encoding': 'chunked' })
  const body = requestBody(request, 1 << 20)
  assert.ok(body !== null)
  const outcome = new Promise<string>((resolve) => {
    body.on('end', () => resolve('end'))
    body.on('error', (err: Error) => resolve(err.message))
    body.resume()
  })
  request.raw.write(Buffer.alloc(100))
  request.raw.emit('close')
  assert.equal(await outcome, 'client closed the connection mid-body')
  const finished = fakeRequest({ 'transfer-encoding': 'chunked' })
  const whole = requestBody(finished, 1 << 20)
  assert.ok(whole !== null)
  const clean = new Promise<string>((resolve) => { whole.on('end', () => resolve('end')); whole.on('error', (err: Error) => resolve(err.message)); whole.resume() })
  finished.raw.end(Buffer.alloc(10))
  ;(finished.raw as unknown as { complete: boolean }).complete = true
  finished.raw.emit('close')
  assert.equal(await clean, 'end', 'a close after the whole body is no error')
})
