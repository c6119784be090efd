// An upstream that misbehaves on purpose: bad framing, bad header bytes, oversized headers, CR/LF in a
// header, death mid-body. berth answers 502 (counting a failure of that server) or cuts the connection,
// and keeps serving.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { startBerth, request, registryError } from '../helper.js'

async function misbehaving (t: { after: (fn: () => void) => void }, reply: (socket: net.Socket) => void): Promise<string> {
  const server = net.createServer((s) => { s.on('error', () => {}); s.once('data', () => reply(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
}

const FAULTS: Array<[string, string]> = [
  ['not HTTP at all', 'SSH-2.0-OpenSSH_9.2\r\n'],
  ['bad status line', 'HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n'],
  ['bad header bytes', 'HTTP/1.1 200 OK\r\nX-Bad\u0000: 1\r\nContent-Length: 0\r\n\r\n'],
  ['CR/LF inside a header value', 'HTTP/1.1 200 OK\r\nLocation: /v2/\rSet-Cookie: x=1\r\nContent-Length: 0\r\n\r\n'],
  ['bare LF inside a header value', 'HTTP/1.1 200 OK\r\nX-A: a\nb\r\nContent-Length: 0\r\n\r\n'],
  ['oversized headers', `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}\r\nContent-Length: 0\r\n\r\n`],
  ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc'],
  ['Content-Length and Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['closes before answering', '']
]

test(`upstream faults (${FAULTS.length} kinds) give 502 with the registry error body and count as failures of that server`, async (t) => {
  for (const [name, reply] of FAULTS) {
    const url = await misbehaving(t, (s) => { if (reply === '') s.destroy(); else s.end(reply) })
    const berth = await startBerth(t, [url], { upstream: { nextUpstream: { on: [] } } })
    const res = await request(berth, '/v2/a/manifests/v1')
    // (A status line and headers that parse, followed by a broken body, give a cut connection instead:
    // see the next test.)
    assert.equal(res.status, 502, name)
    assert.equal(registryError(res.body).code, 'UNAVAILABLE', name)
    assert.equal(berth.app.upstreams.servers[0].failures, 1, `${name}: counted against the server`)
    assert.equal((await request(berth, '/v2/a/manifests/v1')).status, 502, `${name}: still serving`)
  }
})

test('a response that dies mid-body is cut, never delivered as a clean short body', async (t) => {
  const url = await misbehaving(t, (s) => { s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n'); s.write(Buffer.alloc(1000)); setTimeout(() => s.destroy(), 20) })
  const berth = await startBerth(t, [url])
  assert.equal(await request(berth, '/v2/a/blobs/sha256:abc').then(() => 'clean', () => 'cut'), 'cut')
  const chunked = await misbehaving(t, (s) => { s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n'); s.write(Buffer.alloc(1000)); s.write('\r\nzz\r\n'); setTimeout(() => s.destroy(), 20) })
  const berth2 = await startBerth(t, [chunked])
  assert.equal(await request(berth2, '/v2/a/blobs/sha256:abc').then(() => 'clean', () => 'cut'), 'cut')
})
