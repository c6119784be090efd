// Framing and smuggling on raw sockets: each request gets a clear status or a closed connection, and
// nothing refused ever reaches the upstream. Node's strict parser (never insecureHTTPParser) refuses
// most of these; berth refuses what it lets through.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import { once } from 'node:events'
import { startBerth, startUpstream, type Berth } from '../helper.js'

/** Whether `text` holds one whole response (headers, and a body as long as its Content-Length). */
function answered (text: string): boolean {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return false
  const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))
  return length !== null && text.length - end - 4 >= Number(length[1])
}

/** Sends `raw` on a new TLS connection; resolves with the status once one whole response (or a close)
 * came, or 'close' when none came within `wait`. */
export async function rawExchange (berth: Berth, raw: string | Buffer, wait = 1500): Promise<{ status: number | 'close', text: string }> {
  const socket = tls.connect({ host: '127.0.0.1', port: berth.port, ca: berth.ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  let text = ''
  let whole: () => void = () => {}
  const complete = new Promise<void>((resolve) => { whole = resolve })
  socket.on('data', (c: Buffer) => { text += c.toString('latin1'); if (answered(text)) whole() })
  socket.on('error', () => {})
  socket.write(raw)
  await Promise.race([once(socket, 'close'), complete, new Promise((resolve) => setTimeout(resolve, wait))])
  socket.destroy()
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text)
  return { status: m === null ? 'close' : Number(m[1]), text }
}

const H = 'Host: localhost\r\n'
const CASES: Array<[string, string, number | 'close']> = [
  ['HTTP/0.9 request line', 'GET /v2/\r\n\r\n', 400],
  ['explicit HTTP/0.9', 'GET /v2/ HTTP/0.9\r\n\r\n', 400],
  ['HTTP/2.0 on an HTTP/1 connection', `GET /v2/ HTTP/2.0\r\n${H}\r\n`, 400],
  ['HTTP/1.2', `GET /v2/ HTTP/1.2\r\n${H}\r\n`, 400],
  ['two Host headers', `GET /v2/ HTTP/1.1\r\n${H}Host: evil.example\r\n\r\n`, 400],
  ['two Host headers, other case', `GET /v2/ HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n`, 400],
  ['no Host on HTTP/1.1', 'GET /v2/ HTTP/1.1\r\n\r\n', 400],
  ['empty Host', 'GET /v2/ HTTP/1.1\r\nHost:\r\n\r\n', 400],
  ['Host with a path', 'GET /v2/ HTTP/1.1\r\nHost: a.example/evil\r\n\r\n', 400],
  ['Host with userinfo', 'GET /v2/ HTTP/1.1\r\nHost: user@a.example\r\n\r\n', 400],
  ['Host with a space', 'GET /v2/ HTTP/1.1\r\nHost: a b\r\n\r\n', 400],
  ['Transfer-Encoding on HTTP/1.0', 'POST /v2/a/blobs/uploads/ HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['absolute-form http', 'GET http://127.0.0.1:5000/v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n', 400],
  ['absolute-form https', 'GET https://localhost/v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n', 400],
  ['asterisk-form', `OPTIONS * HTTP/1.1\r\n${H}\r\n`, 400],
  ['CONNECT', `CONNECT 127.0.0.1:5000 HTTP/1.1\r\n${H}\r\n`, 'close'],
  ['Content-Length with Transfer-Encoding', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['two different Content-Lengths', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400],
  ['two equal Content-Lengths', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`, 400],
  ['negative Content-Length', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 400],
  ['Content-Length in exponent form', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: 1e3\r\n\r\n`, 400],
  ['Content-Length with inner space', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: 1 0\r\n\r\n`, 400],
  ['Content-Length list', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`, 400],
  ['Transfer-Encoding not ending in chunked', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`, 400],
  ['unknown Transfer-Encoding', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, 400],
  ['obs-fold Transfer-Encoding', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`, 400],
  ['space before the colon', `GET /v2/ HTTP/1.1\r\nHost : localhost\r\n\r\n`, 400],
  ['space before the colon of Transfer-Encoding', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, 400],
  ['bare LF line endings', 'GET /v2/ HTTP/1.1\nHost: localhost\n\n', 400],
  ['bare CR in a header value', `GET /v2/ HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, 400],
  ['NUL in a header value', `GET /v2/ HTTP/1.1\r\n${H}X-A: a\u0000b\r\n\r\n`, 400],
  ['invalid header name', `GET /v2/ HTTP/1.1\r\n${H}X(A): 1\r\n\r\n`, 400],
  ['invalid method token', `G@T /v2/ HTTP/1.1\r\n${H}\r\n`, 400],
  ['lower-case method', `get /v2/ HTTP/1.1\r\n${H}\r\n`, 400],
  ['Content-Length with a sign', `POST /v2/a/blobs/uploads/ HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`, 400],
  ['space in the target', `GET /v2/a b HTTP/1.1\r\n${H}\r\n`, 400],
  ['TRACE', `TRACE /v2/ HTTP/1.1\r\n${H}\r\n`, 404],
  ['PROPFIND', `PROPFIND /v2/ HTTP/1.1\r\n${H}\r\n`, 404],
  ['unknown Expect', `PUT /v2/a/blobs/uploads/u HTTP/1.1\r\n${H}Expect: 200-maybe\r\nContent-Length: 1\r\n\r\n`, 417],
  ['oversized header', `GET /v2/ HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
  ['oversized request line', `GET /v2/${'a'.repeat(20_000)} HTTP/1.1\r\n${H}\r\n`, 431],
  ['encoded slash in the path', `GET /v2/a%2Fb/manifests/v1 HTTP/1.1\r\n${H}\r\n`, 400],
  ['non-ASCII byte in the path', `GET /v2/\u00e9/manifests/v1 HTTP/1.1\r\n${H}\r\n`, 400]
]

test(`framing: ${CASES.length} malformed or smuggling requests each get a clear status or a close, and none reaches the upstream`, async (t) => {
  assert.ok(CASES.length >= 40)
  const up = await startUpstream((req, res) => { req.resume(); res.end('{}') })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const wrong: string[] = []
  for (const [name, raw, expected] of CASES) {
    const got = await rawExchange(berth, Buffer.from(raw, 'latin1'))
    if (got.status !== expected) wrong.push(`${name}: expected ${expected}, got ${got.status} ${JSON.stringify(got.text.slice(0, 80))}`)
  }
  assert.deepEqual(wrong, [])
  assert.deepEqual(up.seen.map((r) => `${r.method} ${r.url}`), [], 'nothing refused reached the upstream')
  // the same connection machinery still serves a well-formed request
  assert.equal((await rawExchange(berth, `GET /v2/ HTTP/1.1\r\n${H}Connection: close\r\n\r\n`)).status, 200)
  assert.equal(up.seen.length, 1)
})

test('a header over the limit gets a registry-shaped 431 every time, also while the client is still sending', async (t) => {
  const up = await startUpstream((req, res) => { req.resume(); res.end('{}') })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const raw = Buffer.from(`GET /v2/ HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(70_000)}\r\n\r\n`)
  const got: string[] = []
  for (let i = 0; i < 20; i++) {
    const socket = tls.connect({ host: '127.0.0.1', port: berth.port, ca: berth.ca, servername: 'localhost' })
    await once(socket, 'secureConnect')
    let text = ''
    socket.on('data', (c: Buffer) => { text += c.toString('latin1') })
    socket.on('error', (err: Error & { code?: string }) => { text += ` (${err.code})` })
    // Written in pieces, as a client on a real network does: most of it arrives after berth refused.
    for (let at = 0; at < raw.length && !socket.destroyed; at += 4096) {
      socket.write(raw.subarray(at, at + 4096))
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
    // A client reads the answer it was sent, then closes.
    const answered = () => /\r\n\r\n\{.*\}$/.test(text)
    for (let waited = 0; !answered() && !socket.destroyed && waited < 2000; waited += 5) await new Promise((resolve) => setTimeout(resolve, 5))
    socket.destroy()
    got.push(/^HTTP\/1\.1 (\d{3})[^]*\r\n\r\n(\{.*\})/.exec(text)?.slice(1).join(' ') ?? `no answer: ${text.slice(-40)}`)
  }
  const expected = '431 {"errors":[{"code":"UNSUPPORTED","message":"request headers exceed the limit","detail":null}]}'
  assert.deepEqual(got, Array(20).fill(expected))
  assert.equal(up.seen.length, 0)
})
